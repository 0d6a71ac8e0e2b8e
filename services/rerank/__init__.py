"""RerankService: orders a candidate list into slots (Dual-Rerank NAR student)."""
