"""Generated from protos/clusterops/v1 by scripts/gen_protos.py. Do not edit."""
