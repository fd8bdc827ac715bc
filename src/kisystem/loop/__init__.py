"""The build-test-profile loop: task specs, workspaces, phases, error categorizing, scoring."""
