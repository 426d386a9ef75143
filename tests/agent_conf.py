"""Test helper: the configuration a new Linux agent process starts with.

A fresh ``ConfigOpts`` each time, never ``cfg.CONF``: a test's agent shares
no option with another test's (the service registry is keyed by the conf).
"""

from oslo_config import cfg

from smartos_telemetry.polling import opts


def linux_agent_conf(state_file, host="cn1"):
    """A parsed conf with ceilometer's ``host`` and our ``[smartos]`` options,
    on the Linux platform, saving its totals to ``state_file`` ("" saves none)."""
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[])
    conf.register_opt(cfg.StrOpt("host", default=host))
    opts.register(conf)
    conf.set_override("platform", "linux", group="smartos")
    conf.set_override("state_file", str(state_file), group="smartos")
    return conf
