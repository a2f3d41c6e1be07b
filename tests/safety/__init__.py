"""The safety promise (issue 10) held to rules 1–7 at every step, on estates and runs built to break it."""
