"""Many models x recipes x targets x devices: build once per CPU kind, benchmark on every device.

``modelport sweep`` runs here (everything in this process) or, with ``--ray ADDRESS``, on a Ray
cluster where each device is a node offering ``device:NAME``. Ray is an optional extra and is
imported only by the Ray runner; the modules a device node imports (``device_tasks``) import
no torch.
"""
