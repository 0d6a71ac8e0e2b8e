"""RankingService: scores live-stream candidates for a user by gift-through-rate (MMBee)."""
