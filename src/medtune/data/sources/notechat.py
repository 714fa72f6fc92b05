"""NoteChat-style multi-turn patient–doctor dialogues → ``Record.messages``.

A row's ``conversation`` is either text with one speaker label per turn::

    Doctor: Hello, what brings you in today?
    Patient: I've had chest pain for two days.
    Doctor: ...

or a list of turns (``"Doctor: ..."`` strings, or objects with ``role``/``speaker``/``from`` and
``content``/``text``/``utterance``/``value``), as in ``akemiH/NoteChat`` and its parsed copies.
The patient side (``Patient``, ``Patient's mother``, ``Family member``, …) becomes ``user``, the
clinician side (``Doctor``, ``Dr``, ``Physician``, ``Nurse``) ``assistant``; a line without a known
label continues the previous turn, and consecutive turns of one side are merged. Leading doctor
turns (a greeting before the patient speaks) and trailing patient turns (nothing to learn from)
are dropped, so every dialogue starts with the user and ends with the assistant.
``question``/``answer`` are the first user and last assistant turns. ``keep_note=True`` keeps
the clinical note (``data`` column) in ``meta["note"]``.
"""

from __future__ import annotations

import re

from medtune.data.errors import DataError, OnError, SkipLog
from medtune.data.files import field_text
from medtune.data.records import Record
from medtune.data.sources.rows import collect, source_name

LICENSE = "unknown"
"""The Hub copy (akemiH/NoteChat) states no licence; the notes come from PMC-Patients (CC BY-NC-SA)."""
HUB_IDS = ("akemiH/NoteChat",)

_DOCTOR = r"doctor|dr\.?|physician|clinician|nurse|assistant|gpt"
_PATIENT = r"patient(?:'s\s+\w+)?|family(?:\s+member)?|mother|father|parent|wife|husband|son|daughter|caregiver|user|human"
_LABEL = re.compile(rf"^[ \t]*(?:\*+[ \t]*)?({_DOCTOR}|{_PATIENT})[ \t]*(?:\*+[ \t]*)?:\s*", re.I | re.M)
r"""A speaker label at a line start ("Doctor:", "**Patient**:"). Each stretch of blanks has one way to
match: ``\s*\**\s*`` after ``^`` tried every split of a run of blank lines at every line start (a
text with 1,000 newlines took 25 s)."""
_IS_DOCTOR = re.compile(rf"(?:{_DOCTOR})$", re.I)


def load(
    path: str,
    *,
    on_error: OnError = "raise",
    skips: SkipLog | None = None,
    limit: int | None = None,
    split: str = "train",
    source: str | None = None,
    license: str = LICENSE,
    field: str = "conversation",
    keep_note: bool = False,
) -> list[Record]:
    """Dialogue records from a file or Hub id.

    Args:
        field: the column holding the conversation.
        keep_note: keep the clinical note (``data``) in ``meta["note"]``.
        Others as in ``chatdoctor.load``.
    """
    source = source or source_name(path)

    def to_record(origin: str, line: int, row: dict) -> Record:
        value = row.get(field)
        if isinstance(value, list):
            turns = [_turn(origin, line, field, i, t) for i, t in enumerate(value)]
        else:
            turns = _split(field_text(origin, line, row, field))
        messages = _messages(turns)
        if not messages:
            raise DataError(
                origin, "no patient turn followed by a doctor turn (expected 'Patient:'/'Doctor:' labels)", line=line, field=field
            )
        meta = {"turns": len(messages)}
        if keep_note and isinstance(row.get("data"), str):
            meta["note"] = row["data"].strip()
        return Record(
            id=f"{source}-{line}",
            source=source,
            question=messages[0]["content"],
            answer=messages[-1]["content"],
            messages=messages,
            license=license,
            meta=meta,
        )

    return collect(path, to_record, on_error=on_error, skips=skips, limit=limit, split=split)


def _split(text: str) -> list[tuple[str, str]]:
    """``[(role, text)]`` from labelled text; anything before the first label is dropped."""
    pieces = _LABEL.split(text)
    return [(_role(label), body.strip()) for label, body in zip(pieces[1::2], pieces[2::2])]


def _turn(origin: str, line: int, field: str, index: int, turn) -> tuple[str, str]:
    where = f"{field}[{index}]"
    if isinstance(turn, str):
        found = _split(turn)
        if len(found) != 1:
            raise DataError(origin, "turn has no 'Doctor:'/'Patient:' label", line=line, field=where)
        return found[0]
    if isinstance(turn, dict):
        speaker = next((turn[k] for k in ("role", "speaker", "from") if isinstance(turn.get(k), str)), None)
        content = next((turn[k] for k in ("content", "text", "utterance", "value") if isinstance(turn.get(k), str)), None)
        if speaker is None or content is None:
            raise DataError(origin, "expected role/speaker and content/text", line=line, field=where)
        return _role(speaker), content.strip()
    raise DataError(origin, f"expected a string or object, got {type(turn).__name__}", line=line, field=where)


def _role(label: str) -> str:
    return "assistant" if _IS_DOCTOR.match(label.strip().strip("*").strip()) else "user"


def _messages(turns: list[tuple[str, str]]) -> list[dict[str, str]]:
    merged: list[dict[str, str]] = []
    for role, text in turns:
        if not text:
            continue
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"] += "\n" + text
        else:
            merged.append({"role": role, "content": text})
    while merged and merged[0]["role"] == "assistant":
        merged.pop(0)
    while merged and merged[-1]["role"] == "user":
        merged.pop()
    return merged
