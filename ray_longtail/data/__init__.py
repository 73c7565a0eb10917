"""Data contract, ingest, temporal split and the bundled / synthetic datasets."""
