"""ComfyUI adapters: each node converts ComfyUI types and calls `dreammix_core`."""
