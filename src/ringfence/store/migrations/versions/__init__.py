"""One module per revision, written by hand so that each reads as the schema change it makes."""
