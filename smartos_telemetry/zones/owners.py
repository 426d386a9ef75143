"""Who owns a zone: the project (and user) its samples are billed to.

Where the platform knows the owner, it wins: a Nova instance's project and
user from Nova's metadata in libvirt's domain record, a SmartOS VM's
``owner_uuid``.  Every other zone -- a container, a systemd service or
scope, a plain cgroup, an instance whose record has no Nova metadata --
gets its owner from the operator's rules file (``[smartos] owners_file``),
YAML::

    rules:                          # tried in order; the first match wins
      - path: /tenants/acme-*       # glob on the cgroup path (Linux)
        project_id: 6f0c3b1e9a8d4c2b8e5f7a1d3c9b2e40
        user_id: 0b7e5c1d2f3a4b6c8d9e0f1a2b3c4d5e    # optional
      - kind: docker                # zone kind (smartos-telemetry zones)
        name: "3f2a*"               # glob on the zone name
        project_id: 1a2b3c4d5e6f40718293a4b5c6d7e8f9
    default:                        # optional: zones no rule matches
      project_id: 9e8d7c6b5a4f43e2d1c0b9a8f7e6d5c4

A rule matches a zone when every field it gives (``path``, ``kind``,
``name``; at least one) matches.  ``path`` and ``name`` are shell globs
(``*``, ``?``, ``[...]``; ``*`` crosses ``/``) matched with
:func:`fnmatch.fnmatchcase` against the zone's path and name as
``smartos-telemetry zones --json`` prints them; the zone's own text is only
ever the string matched, never part of a pattern, so a cgroup named ``*``
or ``[x]`` matches only what matches it literally.

A file that does not parse or has a bad rule raises
:class:`OwnerRulesError` (a :class:`~smartos_telemetry.errors.ConfigError`)
naming the file, the rule and the fix; the agent then disables the zone
meters until it restarts with a corrected file, as for any bad
``[smartos]`` option.  It does not go on with the valid rules only: the
zones a bad rule was meant for would be billed to the default or to a later
rule's project -- to a wrong tenant, silently -- where a gap shows.

Without a file every zone the platform knows no owner of has
:data:`NO_OWNER` as its project and user.
"""

import dataclasses
import fnmatch
import re

import yaml

from smartos_telemetry.errors import ConfigError

#: The project and user of a zone no one owns.  Ceilometer's Prometheus
#: exporter labels a sample with ``project`` and ``user`` only when they are
#: set, and prometheus_client fixes a metric's label names at its first sample
#: (ceilometer/polling/prom_exporter.py, _gen_labels and collect_metrics): a
#: meter whose samples set them for some zones and not for others fails with
#: "Incorrect label count", losing the rest of the batch.  No keystone id is
#: "none", so it never names a real tenant.
NO_OWNER = "none"

MATCH_KEYS = ("path", "kind", "name")
OWNER_KEYS = ("project_id", "user_id")
#: keystone keeps user and project ids in 64 characters
#: (keystone/identity/backends/sql_model.py, User.id; keystone/resource/
#: backends/sql_model.py, Project.id: String(64))
ID_MAX = 64
_ID = re.compile(r"[A-Za-z0-9._~@-]+\Z")


class OwnerRulesError(ConfigError):
    """The owners file cannot be used: ``path`` and, where one is at fault,
    ``rule`` (1-based) are named in the message with the fix."""

    def __init__(self, path, message, rule=None):
        self.path = path
        self.rule = rule
        where = f"[smartos] owners_file {path}"
        if rule is not None:
            where += f": rule {rule}"
        super().__init__(f"{where}: {message}")


def _known_kinds():
    from smartos_telemetry.zones.linux_cgroups import KINDS
    from smartos_telemetry.zones.smartos_vmadm import BRANDS
    return KINDS | BRANDS


@dataclasses.dataclass(frozen=True)
class Rule:
    number: int
    project_id: str
    user_id: str = NO_OWNER
    path: str = None
    kind: str = None
    name: str = None

    def matches(self, zone):
        if self.kind is not None and zone.kind != self.kind:
            return False
        if self.path is not None and (zone.path is None
                                      or not fnmatch.fnmatchcase(zone.path, self.path)):
            return False
        return self.name is None or fnmatch.fnmatchcase(zone.name, self.name)

    def describe(self):
        return ", ".join(f"{k} {getattr(self, k)}" for k in MATCH_KEYS
                         if getattr(self, k) is not None)


@dataclasses.dataclass(frozen=True)
class OwnerRules:
    """The operator's rules (none: every unowned zone is :data:`NO_OWNER`'s)."""

    rules: tuple = ()
    default: tuple = None  # (user_id, project_id)
    source: str = None

    @property
    def configured(self):
        return bool(self.rules) or self.default is not None

    def owner(self, zone):
        """``(user_id, project_id, why)`` of a zone: the platform's owner, the
        first rule that matches, the default, or :data:`NO_OWNER`."""
        project = zone.attribute("project_id")
        if project:
            return zone.attribute("user_id") or NO_OWNER, project, "platform"
        for rule in self.rules:
            if rule.matches(zone):
                return rule.user_id, rule.project_id, f"rule {rule.number}"
        if self.default is not None:
            return self.default[0], self.default[1], "default"
        return NO_OWNER, NO_OWNER, "none"

    def apply(self, zones):
        """``zones`` with ``project_id`` and ``user_id`` set on every one."""
        out = []
        for zone in zones:
            user, project, _ = self.owner(zone)
            attrs = dict(zone.attributes)
            if attrs.get("project_id") != project or attrs.get("user_id") != user:
                attrs.update(project_id=project, user_id=user)
                zone = dataclasses.replace(zone, attributes=tuple(sorted(attrs.items())))
            out.append(zone)
        return out

    def summary(self):
        """One line for the log and ``smartos-telemetry check``."""
        if not self.configured:
            return ("no owner rules ([smartos] owners_file unset): zones that are not Nova "
                    f"instances or SmartOS VMs with an owner_uuid carry project "
                    f"'{NO_OWNER}' (fix: set owners_file, README 'Bill and alarm on your "
                    f"meters')")
        default = f"default project {self.default[1]}" if self.default else \
            f"no default (unmatched zones: project '{NO_OWNER}')"
        return f"{len(self.rules)} owner rule(s) from {self.source}; {default}"


def _owner_ids(path, entry, rule, what):
    """``(user_id, project_id)`` of a rule (``what`` ''), or of ``default:``."""
    ids = {}
    for key in OWNER_KEYS:
        if key not in entry:
            continue
        value = entry[key]
        if not isinstance(value, str) or not value:
            raise OwnerRulesError(path, f"{what}{key} {value!r} is not a text id (fix: quote it, "
                                        f"e.g. {key}: \"{value}\")", rule)
        if value == NO_OWNER or len(value) > ID_MAX or not _ID.match(value):
            raise OwnerRulesError(path, f"{what}{key} {value!r} is not a keystone id (fix: the "
                                        f"id `openstack project show` / `openstack user "
                                        f"show` print, at most {ID_MAX} characters)", rule)
        ids[key] = value
    if "project_id" not in ids:
        raise OwnerRulesError(path, f"{what}no project_id (fix: add project_id: <the "
                                    f"project's id>)", rule)
    return ids.get("user_id", NO_OWNER), ids["project_id"]


def _rule(path, number, entry, kinds):
    if not isinstance(entry, dict):
        raise OwnerRulesError(path, f"is {type(entry).__name__}, not a mapping (fix: e.g. "
                                    f"- path: /tenants/acme-*  project_id: <id>)", number)
    unknown = sorted(str(k) for k in entry if k not in MATCH_KEYS + OWNER_KEYS)
    if unknown:
        raise OwnerRulesError(path, f"unknown key(s) {', '.join(unknown)} (fix: match on "
                                    f"{', '.join(MATCH_KEYS)}; give {', '.join(OWNER_KEYS)})",
                              number)
    match = {k: entry[k] for k in MATCH_KEYS if k in entry}
    if not match:
        raise OwnerRulesError(path, f"matches nothing: give at least one of "
                                    f"{', '.join(MATCH_KEYS)} (fix: for every zone no rule "
                                    f"matches, use `default:` instead)", number)
    for key, value in match.items():
        if not isinstance(value, str) or not value:
            raise OwnerRulesError(path, f"{key} {value!r} is not text (fix: quote it)",
                                  number)
    if "path" in match and not match["path"].startswith("/"):
        raise OwnerRulesError(path, f"path {match['path']!r} is not absolute (fix: cgroup "
                                    f"paths under the unified root start with '/', e.g. "
                                    f"/{match['path'].lstrip('/')})", number)
    if "kind" in match and match["kind"] not in kinds:
        raise OwnerRulesError(path, f"kind {match['kind']!r} is no zone kind (fix: one of "
                                    f"{', '.join(sorted(kinds))})", number)
    user_id, project_id = _owner_ids(path, entry, number, "")
    return Rule(number=number, project_id=project_id, user_id=user_id, **match)


def parse(text, path="<text>"):
    """The :class:`OwnerRules` of a file's ``text``; :class:`OwnerRulesError`
    names the first bad rule."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise OwnerRulesError(path, f"not YAML{where}: {problem} (fix: see the example in "
                                    f"etc/ceilometer/smartos-owners.yaml)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise OwnerRulesError(path, "is not a mapping with rules: and default: (fix: see "
                                    "etc/ceilometer/smartos-owners.yaml)")
    unknown = sorted(str(k) for k in data if k not in ("rules", "default"))
    if unknown:
        raise OwnerRulesError(path, f"unknown key(s) {', '.join(unknown)} (fix: only rules: "
                                    f"and default:)")
    entries = data.get("rules") or []
    if not isinstance(entries, list):
        raise OwnerRulesError(path, "rules: is not a list (fix: one '- ' entry per rule)")
    kinds = _known_kinds()
    rules = tuple(_rule(path, n, entry, kinds) for n, entry in enumerate(entries, 1))
    default = None
    if data.get("default") is not None:
        entry = data["default"]
        if not isinstance(entry, dict) or set(entry) - set(OWNER_KEYS):
            raise OwnerRulesError(path, "default: takes project_id and user_id only (fix: "
                                        "default: {project_id: <id>})")
        default = _owner_ids(path, entry, None, "default: ")
    return OwnerRules(rules=rules, default=default, source=path)


def load(path):
    """The rules of the file at ``path``; an empty ``path``: no rules."""
    if not path:
        return OwnerRules()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise OwnerRulesError(path, f"cannot be read: {reason} (fix: correct the path, or "
                                    f"unset owners_file)") from None
    return parse(text, path)
