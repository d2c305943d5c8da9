"""The offline provider: the trained classifier plus the rule tools, called in a fixed order."""

from __future__ import annotations

from routing import tools
from routing.schemas import ProviderResult, RoutingDecisionOutput, ToolTrace
from routing.tools import TicketContext


def run_tools(ctx: TicketContext, trace: ToolTrace) -> dict[str, dict]:  # type: ignore[type-arg]
    """Call the seven tools on the loaded context, recording each call in ``trace``."""
    ref = {"ticket": ctx.number}
    cls = trace.call("classify_issue", ref, lambda: tools.classify_issue(ctx.text, ctx.router))
    ents = trace.call("extract_entities", ref, lambda: tools.extract_entities(ctx.text))
    vip = trace.call(
        "check_vip_status",
        {"customer_id": ctx.customer.id},
        lambda: tools.check_vip_status(ctx.customer),
    )
    hist = trace.call(
        "get_historical_context",
        {"customer_id": ctx.customer.id},
        lambda: tools.get_historical_context(ctx.history),
    )
    svc_in = {"service_ids": ents["service_ids"], "category": cls["category"]}
    svc = trace.call(
        "check_service_status",
        svc_in,
        lambda: tools.check_service_status(
            ctx.text, ents["service_ids"], cls["category"], ctx.services
        ),
    )
    prio_in = {
        "vip_tier": vip["vip_tier"],
        "account_type": vip["account_type"],
        "outage_match": svc["outage_match"],
        "known_issue": svc["known_issue"],
        "waiting_minutes": round(ctx.waiting_minutes, 1),
        "recent_tickets": hist["tickets_last_7_days"],
        "category": cls["category"],
    }
    prio = trace.call(
        "calculate_priority",
        prio_in,
        lambda: tools.calculate_priority(text=ctx.text, **prio_in),  # type: ignore[arg-type]
    )
    team_in = {"category": cls["category"], "vip_tier": vip["vip_tier"]}
    team = trace.call(
        "route_to_team",
        team_in,
        lambda: tools.route_to_team(
            category=cls["category"],
            vip_tier=vip["vip_tier"],
            team_map=ctx.team_map,
            vip_billing_team=ctx.vip_billing_team,
            team_names=ctx.team_names,
        ),
    )
    return {
        "classification": cls,
        "entities": ents,
        "vip": vip,
        "history": hist,
        "services": svc,
        "priority": prio,
        "team": team,
    }


class LocalProvider:
    name = "local"

    def decide(self, ctx: TicketContext) -> ProviderResult:
        trace = ToolTrace()
        out = run_tools(ctx, trace)
        cls, prio, team = out["classification"], out["priority"], out["team"]
        reasoning = (
            f"Classified as {cls['category']} / {cls['intent']} "
            f"(p={cls['category_confidence']:.2f}); {team['rule']}; "
            f"priority {prio['priority']} (score {prio['score']:g}: "
            f"{', '.join(prio['reasons'][1:]) or 'no raising signal'})."
        )
        decision = RoutingDecisionOutput(
            team=team["team"],
            priority=prio["priority"],
            confidence=min(1.0, max(0.0, cls["category_confidence"])),
            category=cls["category"],
            intent=cls["intent"],
            secondary=[s["intent"] for s in cls["secondary"]],
            reasoning=reasoning,
        )
        return ProviderResult(decision=decision, trace=trace, provider=self.name)
