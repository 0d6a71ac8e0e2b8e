"""MMBee (KDD 2024, arXiv 2407.00056): live-stream gift-through-rate ranking (MFQ fusion + GIE expansion)."""
