"""Declaring an incident: the snapshot of what failures take down, taken on the estate graph.

At declaration ringfence records every down item (service or asset) with its restore step
(:func:`ringfence.core.recovery.plan_recovery`), what it waits for among the other down items (hard
requirements that are down, and ``any: K`` groups short of K members up), and the continuity plans of the
down services. From then on the incident (:mod:`ringfence.core.incident`) lives on that snapshot alone.

Each item keeps its own measured time to restore, when one is handed in (``measured``: the latest restore test of
each asset or service as of the declaration, :func:`ringfence.core.assurance.measured_restores`), so the clocks
use what was measured, and say which times are estimates, as ``ringfence recover --assurance`` does.

Pure: numpy and the core; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

import numpy as np

from ringfence.core.durations import format_duration
from ringfence.core.errors import InputError, Problem
from ringfence.core.graph import EstateGraph, Failure
from ringfence.core.incident import (
    DEFAULT_STEP_SECONDS,
    LONGEST_STEP,
    DownItem,
    EventKind,
    GroupNeed,
    Incident,
    IncidentEvent,
    ItemKind,
    require_actor,
    require_aware,
)
from ringfence.core.recovery import MeasuredRestore, plan_recovery
from ringfence.core.words import count


def declare_incident(
    graph: EstateGraph,
    failures: Sequence[Failure],
    *,
    incident_id: str,
    at: datetime,
    actor: str,
    title: str | None = None,
    step_seconds: int = DEFAULT_STEP_SECONDS,
    rollout_id: str | None = None,
    estate_version_id: int | None = None,
    note: str | None = None,
    measured: Mapping[str, MeasuredRestore] | None = None,
) -> Incident:
    """Declare an incident: snapshot what ``failures`` take down, in restore order, with its continuity plans.

    ``note`` is added to the declaration's text (e.g. the halt reason of the rollout that caused it).
    ``measured``: measured times to restore by id (ids not down are ignored); every other item takes
    ``step_seconds``, an estimate.
    """
    require_aware(at, "declared")
    if not failures:
        raise InputError([Problem("say what failed (e.g. supplier:advanced) to declare an incident", path=("fail",))])
    if step_seconds < 1:
        raise InputError([Problem(f"a restore step takes at least 1 s, not {step_seconds}", path=("step_seconds",))])
    if step_seconds > LONGEST_STEP:
        # Stored with the incident and multiplied by each item's step: bounded here, so no clock overflows.
        longest = format_duration(LONGEST_STEP)
        raise InputError([Problem(f"a restore step takes at most {longest}, not {step_seconds} s", ("step_seconds",))])
    measured = measured or {}
    plan = plan_recovery(graph, failures, step_seconds=step_seconds, measured=measured)
    refs = plan.failed
    down = graph.down_after(failures).mask
    if not down.any():
        raise InputError(
            [
                Problem(
                    f"{', '.join(refs)} takes nothing down in estate '{graph.estate.name}': there is no incident "
                    "to declare",
                    path=("fail",),
                )
            ]
        )
    step_of = plan.step_of()
    items = tuple(
        replace(i, takes=m.seconds, measured_on=m.day) if (m := measured.get(i.id)) is not None else i
        for i in _down_items(graph, down, step_of)
    )
    title = (title or "").strip() or f"Loss of {', '.join(refs)}"
    services = sum(1 for i in items if i.kind is ItemKind.SERVICE)
    text = (
        f"declared: {', '.join(refs)} failed; {count(services, 'service')} and "
        f"{count(len(items) - services, 'asset')} down, {count(len(plan.steps), 'restore step')}"
    )
    tested = sum(1 for i in items if i.takes is not None)
    if tested:
        text += f"; measured restore times for {tested} of {count(len(items), 'item')}, the rest estimates"
    if rollout_id is not None:
        text += f"; caused by rollout {rollout_id}"
    if note:
        text += f" ({note})"
    return Incident(
        id=incident_id,
        title=title,
        estate=graph.estate.name,
        failed=refs,
        declared_at=at,
        declared_by=require_actor(actor),
        items=items,
        continuity=plan.continuity,
        events=(IncidentEvent(at, EventKind.DECLARED, require_actor(actor), text, ()),),
        step_seconds=step_seconds,
        rollout_id=rollout_id,
        estate_version_id=estate_version_id,
    )


def _down_items(graph: EstateGraph, down: np.ndarray, step_of: Mapping[str, int]) -> tuple[DownItem, ...]:
    estate = graph.estate
    # The short groups of each down owner: only these can hold an item up.
    groups_of: dict[int, list[GroupNeed]] = {}
    for g in np.flatnonzero(down[graph.group_owner]).tolist():
        members = graph.members_of(g)
        down_members = members[down[members]]
        up = int(members.size - down_members.size)
        k = int(graph.group_k[g])
        if up >= k:
            continue
        names = tuple(sorted(graph.ids[m] for m in down_members.tolist()))
        groups_of.setdefault(int(graph.group_owner[g]), []).append(
            GroupNeed(k, up, names, graph.group_spec[g].describe())
        )
    items = []
    for node in np.flatnonzero(down).tolist():
        node_id = graph.ids[node]
        needs = tuple(sorted(graph.ids[r] for r in graph.hard_requirements_of(node) if down[r]))
        groups = tuple(groups_of.get(node, ()))
        if graph.is_service(node):
            service = estate.services[node]
            items.append(
                DownItem(
                    node_id, ItemKind.SERVICE, service.label, step_of[node_id], service.tier, service.rto, needs, groups
                )
            )
        else:
            asset = estate.assets[node - graph.n_services]
            items.append(
                DownItem(node_id, ItemKind.ASSET, asset.name or asset.id, step_of[node_id], None, None, needs, groups)
            )
    return tuple(sorted(items, key=lambda i: (i.step, i.id)))


__all__ = ["declare_incident"]
