"""How a replica's process is set up before it loads a model: its device and threads
(devices.py), its GIL switch interval, its malloc (allocator.py)."""
