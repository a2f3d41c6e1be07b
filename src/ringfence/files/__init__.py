"""Adapters that read and write files: estate and update files, importers, the drill report, downtime packs."""
