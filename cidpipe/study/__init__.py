"""Studies over many runs: method comparisons (mean ± std over seeds), bias flavours, linear probes."""
