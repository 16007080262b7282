"""Execution events ⇄ nbformat v4 outputs: the one place that maps between the agent protocol's
messages (docs/protocol.md, "Rich outputs") and the outputs a .ipynb stores.

`outputs_from_events` builds a code cell's outputs as a Jupyter frontend (nbclient) keeps
them: consecutive stream text of one name in one output, `clear_output` applied (with `wait`,
when the next output comes), an `update_display` replacing the data of every earlier output
with its display id, in this cell or an earlier one. `events_from_outputs` goes the other way,
for `njtui import`. Events come from a results directory anyone may have written, so a field of
the wrong type is passed over, never an exception.
"""

from __future__ import annotations

import copy
from typing import Any

from nbformat.v4 import new_output

from njtui.model.output import display_id_of, is_json_mime

# Where a display id's outputs are, across the cells of one notebook: the caller passes one
# dict through every cell, in order, as nbclient keeps its display id map.
Displays = dict[str, list[dict[str, Any]]]


def _bundle(value: Any) -> dict[str, Any]:
    """A MIME bundle nbformat accepts: text for the text types (lines joined, as nbformat reads
    them), any JSON value for the JSON ones; entries of another shape are left out."""
    if not isinstance(value, dict):
        return {}
    bundle: dict[str, Any] = {}
    for mime, data in value.items():
        if not isinstance(mime, str):
            continue
        if is_json_mime(mime):
            bundle[mime] = copy.deepcopy(data)
        elif isinstance(data, str):
            bundle[mime] = data
        elif isinstance(data, list) and all(isinstance(line, str) for line in data):
            bundle[mime] = "".join(data)
    return bundle


def _metadata(value: Any) -> dict[str, Any]:
    return copy.deepcopy(value) if isinstance(value, dict) else {}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    return None


def _output(event: dict[str, Any]) -> dict[str, Any] | None:
    """The output one event adds to a cell, or None (an event that shows nothing)."""
    kind = event.get("type")
    if kind == "stream":
        text = _text(event.get("text"))
        name = event.get("name")
        if text is None:
            return None
        return dict(new_output("stream", name=name if isinstance(name, str) else "stdout", text=text))
    if kind == "result":
        return dict(new_output("execute_result", data=_bundle(event.get("data")), metadata=_metadata(event.get("metadata")), execution_count=_count(event.get("count"))))
    if kind == "display":
        return dict(new_output("display_data", data=_bundle(event.get("data")), metadata=_metadata(event.get("metadata"))))
    if kind == "error":
        traceback = event.get("traceback")
        lines = traceback.split("\n") if isinstance(traceback, str) and traceback else []
        ename, evalue = event.get("ename"), event.get("evalue")
        return dict(new_output("error", ename=ename if isinstance(ename, str) else "Error", evalue=evalue if isinstance(evalue, str) else "", traceback=lines))
    return None


def outputs_from_events(events: Any, displays: Displays | None = None) -> list[dict[str, Any]]:
    """One execution's outputs in nbformat v4 (dicts as nbformat.v4.new_output makes them), from
    its events in order. `displays`: the display ids of the cells before, shared through a
    notebook's cells so an update reaches an output of an earlier cell, as in Jupyter."""
    displays = {} if displays is None else displays
    outputs: list[dict[str, Any]] = []
    clear_pending = False

    def clear() -> None:
        # This cell's outputs go, and with them their places in the display map.
        cleared = {id(output) for output in outputs}
        for shown in displays.values():
            shown[:] = [output for output in shown if id(output) not in cleared]
        outputs.clear()

    for event in events:
        if not isinstance(event, dict):
            continue
        kind = event.get("type")
        display_id = display_id_of(event)
        if kind == "clear_output":
            if event.get("wait") is True:
                clear_pending = True
            else:
                clear_pending = False
                clear()
            continue
        if kind in ("update_display", "display", "result") and display_id is not None:
            # nbclient's order: an output with a display id first updates those shown before.
            data, metadata = _bundle(event.get("data")), _metadata(event.get("metadata"))
            for output in displays.get(display_id, []):
                output["data"] = copy.deepcopy(data)
                output["metadata"] = copy.deepcopy(metadata)
        if kind == "update_display":
            continue
        shown = _output(event)
        if shown is None:
            continue
        output = shown
        if clear_pending:
            clear_pending = False
            clear()
        if output["output_type"] == "stream" and outputs and outputs[-1]["output_type"] == "stream" and outputs[-1]["name"] == output["name"]:
            outputs[-1]["text"] += output["text"]
            continue
        outputs.append(output)
        if display_id is not None and kind in ("display", "result"):
            displays.setdefault(display_id, []).append(output)
    return outputs


def events_from_outputs(outputs: Any, count: int | None) -> list[dict[str, Any]]:
    """The events that show a stored cell's outputs (nbformat v4) again: what `njtui import`
    records as the cell's execution. `count`: the cell's execution count, for a result without
    its own. Output types nbformat does not define are passed over."""
    events: list[dict[str, Any]] = []
    for output in outputs if isinstance(outputs, list) else []:
        if not isinstance(output, dict):
            continue
        kind = output.get("output_type")
        if kind == "stream":
            text = _text(output.get("text"))
            name = output.get("name")
            if text is not None:
                events.append({"type": "stream", "name": name if isinstance(name, str) else "stdout", "text": text})
        elif kind == "execute_result":
            own = _count(output.get("execution_count"))
            events.append({"type": "result", "count": own if own is not None else count, "data": _bundle(output.get("data")), "metadata": _metadata(output.get("metadata"))})
        elif kind == "display_data":
            events.append({"type": "display", "data": _bundle(output.get("data")), "metadata": _metadata(output.get("metadata")), "display_id": None})
        elif kind == "error":
            traceback = output.get("traceback")
            lines = [line for line in traceback if isinstance(line, str)] if isinstance(traceback, list) else []
            ename, evalue = output.get("ename"), output.get("evalue")
            events.append({"type": "error", "ename": ename if isinstance(ename, str) else "Error", "evalue": evalue if isinstance(evalue, str) else "", "traceback": "\n".join(lines)})
    return events
