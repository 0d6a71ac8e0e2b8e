"""MMBee's MovieLens-100k evaluation (paper Table 3): the GIE-based recommender against PyG's LightGCN and
popularity, under one protocol (protocol.py). Entry point: `recsys.mmbee.movielens.evaluate.main`.

Submodules import torch and torch-geometric; this package imports nothing at import time.
"""
