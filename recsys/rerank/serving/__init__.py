"""Serving the Dual-Rerank models: the domain request and its rules (`requests`, torch-free), the engine that
reranks one request with a loaded model folder (`engine`), and a tiny folder for tests (`testing`).

Its own package because it imports `recsys.rerank.models`, which imports the page contract in `recsys.rerank`:
kept in `recsys/rerank` itself it would make the two packages a cycle Bazel cannot build."""
