"""Work sent to Dask workers: a pool per resource, remote accuracy evaluation, remote training."""
