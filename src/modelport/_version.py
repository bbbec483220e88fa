"""Version constants: imported by anyone, imports nothing (so nothing cycles back to the root)."""

__version__ = "0.1.0"
#: bumped when a bundle's manifest changes in a way an older reader cannot read
SCHEMA_VERSION = 2  # 2: multi-graph bundles (``graphs``); readers still open 1
