"""Data of the recommenders: the synthetic live-streaming world (`world`), the model batches (`batches`), the
training/evaluation datasets built from a world (`dataset`) and public data sets (`movielens`).

Import the submodules directly (`from recsys.data.world import WorldConfig`); this package imports nothing, so
torch-free users (the world generator) stay torch-free."""
