"""Data curation: datatrove pipeline steps over documents, run by a local, Slurm or Ray executor."""
