"""MMBee's MovieLens-100k evaluation (paper Table 3): the GIE-based recommender against PyG's LightGCN and
popularity, under one protocol (protocol.py). Command: `kmono mmbee eval --dataset movielens`.

Submodules import torch and torch-geometric; this package imports nothing at import time.
"""
