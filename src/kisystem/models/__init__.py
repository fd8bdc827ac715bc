"""Model inventory, HTTP adapters and the embedded llama.cpp fleet."""
