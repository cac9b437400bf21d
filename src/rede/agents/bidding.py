"""An agent's side of an auction (``routing.strategy: auction``): what it bids.

The orchestrator's side, the call for bids and the award, is :mod:`rede.routing.auction`.
"""

from __future__ import annotations

from rede.protocol.messages import AgentCard, Bid, BidRequest


def make_bid(card: AgentCard, request: BidRequest, *, queue: int, concurrency: int) -> Bid | None:
    """An agent's default bid: the card's prices for the requested tokens and its declared
    quality as the expected confidence. None: the agent does not bid."""
    if request.capability not in card.capabilities:
        return None
    price = (
        request.prompt_tokens * card.price_in_per_1k
        + request.completion_tokens * card.price_out_per_1k
    ) / 1000
    return Bid(
        agent=card.name,
        price_usd=price,
        confidence=card.quality,
        queue=queue,
        concurrency=concurrency,
    )


__all__ = ["make_bid"]
