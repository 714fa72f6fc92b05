"""The terminal chat behind ``medtune chat``: read a line, stream the guarded answer (rich renders it)."""

from __future__ import annotations

from medtune.inference.chat import ChatSession

HELP = "/think  show or hide reasoning (and show the last answer's)   /reset  forget the conversation   /quit  leave (or Ctrl-D)"


def repl(session: ChatSession, console=None) -> None:
    """The terminal chat: read a line, stream the guarded answer, until /quit or end of input."""
    from rich.console import Console
    from rich.panel import Panel

    console = console or Console()
    disclaimer = session.guardrails.disclaimer if session.guardrails else ""
    banner = disclaimer or "General information only."
    console.print(Panel(banner, title="medtune chat", subtitle="/help for commands", border_style="cyan"))
    while True:
        try:
            line = console.input("[bold green]you>[/bold green] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not line:
            continue
        if line.startswith("/"):
            if not _command(line, session, console):
                return
            continue
        reply = session.send(line)
        console.print("[bold cyan]medtune>[/bold cyan] ", end="")
        labelled = False
        for kind, text in reply:
            if not labelled and reply.triage != "general":
                console.print(f"[bold yellow]\\[triage: {reply.triage}][/bold yellow]")
                labelled = True
            if kind == "think":
                if session.show_think:
                    console.print(Panel(text, title="thinking", border_style="dim", style="dim"))
                continue
            console.out(text, end="", highlight=False)
        console.print()
        notes = []
        if reply.thinking and not session.show_think:
            notes.append("reasoning hidden: /think to show it")
        if reply.dropped_turns:
            notes.append(f"{reply.dropped_turns} oldest turn(s) left out to fit chat.history_tokens")
        if notes:
            console.print(f"[dim]({'; '.join(notes)})[/dim]")


def _command(line: str, session: ChatSession, console) -> bool:
    """Run a /command; False means leave the REPL."""
    from rich.panel import Panel

    cmd = line.split()[0].lower()
    if cmd in ("/quit", "/exit", "/q"):
        return False
    if cmd == "/reset":
        session.reset()
        console.print("[dim]conversation cleared[/dim]")
    elif cmd == "/think":
        session.show_think = not session.show_think
        console.print(f"[dim]reasoning {'shown' if session.show_think else 'hidden'}[/dim]")
        if session.show_think:
            last = session.last.thinking if session.last else ""
            if last:
                console.print(Panel(last, title="thinking (last answer)", border_style="dim", style="dim"))
            else:
                console.print("[dim](the last answer had no <think> section)[/dim]")
    elif cmd == "/help":
        console.print(HELP, highlight=False)
    else:
        console.print(f"[red]unknown command {cmd}[/red]; {HELP}", highlight=False)
    return True
