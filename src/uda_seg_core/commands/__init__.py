"""The command line of `uda-seg`: one thin module per command.

Each module provides `add_arguments(parser)` and `run(args) -> int`: it parses the flags,
calls the library function that does the work (`uda_seg_core.train`, `.optimize`,
`.evaluate`, `.study`, ...), prints the result, and turns the errors a user can fix into
one line on stderr and exit status 2. Nothing here is imported by the libraries;
`uda_seg_core.cli` imports a command's module only when that command runs.
"""
