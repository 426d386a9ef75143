"""Several shipped D scripts as one program: how the libdtrace engine runs them.

Oracle DTrace runs one consumer per process, and one program per consumer
is also what costs least (one set of buffers, one keep-alive): the agent
runs all of a platform's D scripts as one program
(``DTraceConsumer.combines_scripts``).
"""

from smartos_telemetry.errors import ConfigError
from smartos_telemetry.scripts import contract, script_path


def combine(relatives):
    """One D program made of several shipped scripts, and its contract.

    The scripts' aggregation names must not clash (checked here); their
    variables are named per script by convention (``qtime``, ``io_start``,
    ``syn_sent``, ...).
    """
    parts, merged = [], {}
    for relative in relatives:
        if not relative.endswith(".d"):
            raise ConfigError(f"{relative}: only D scripts can be combined")
        with open(script_path(relative), encoding="utf-8") as f:
            source = f.read()
        for name, agg in contract(source).items():
            if name in merged:
                raise ConfigError(f"@{name} is declared by two scripts; rename one")
            merged[name] = agg
        parts.append(f"/* ---- {relative} ---- */\n{source}")
    return "\n".join(parts), merged
