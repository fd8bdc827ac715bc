"""The adaptive ensemble (seed E, DESIGN decision 9): a complexity tier sizes a fan-out over the
fleet, members answer concurrently under per-endpoint semaphores and a tier timeout, and a
consensus picks the answer (by execution where there is code to run)."""
