"""`njtui secrets`: sets, lists and removes the secrets in the user's secret store."""

from __future__ import annotations

import argparse
import sys

from njtui.commands.common import EXIT_BAD_INPUT, EXIT_OK, UsageError


def cmd_secrets(args: argparse.Namespace) -> int:
    from njtui.store.secrets import SecretStore

    store = SecretStore()
    if args.action == "ls":
        for name in store.names():
            print(name)
        return EXIT_OK
    if not args.name:
        raise UsageError(f"say which secret: njtui secrets {args.action} NAME")
    if args.action == "rm":
        if not store.remove(args.name):
            print(f"njtui: no secret named {args.name!r}; `njtui secrets ls` lists them", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"removed secret {args.name}")
        return EXIT_OK
    # set: the value never comes from the command line, where shell history and `ps` see it.
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"value of secret {args.name}: ")
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
    if not value:
        raise UsageError("the secret's value is empty; type it at the prompt or pipe it on stdin")
    store.set(args.name, value)
    print(f"stored secret {args.name} in {store.path}")
    return EXIT_OK
