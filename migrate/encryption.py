"""Server-side encryption per object: the destination's default, or the matching rule's (like the storage class).

Pure and low in the layers: `run` writes with it, `verify` checks with it,
and the journal fingerprints with it, so all three agree per object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from migrate.plan import Plan

#: (server_side_encryption, kms_key_id); (None, None) is the bucket's default.
Encryption = tuple[str | None, str | None]


@dataclass(frozen=True)
class EncryptionSettings:
    """`destination.server_side_encryption`/`kms_key_id`, overridden per rule name."""

    default: Encryption = (None, None)
    by_rule: Mapping[str, Encryption] = field(default_factory=dict)

    def for_rule(self, rule: str | None) -> Encryption:
        """What an object matched by `rule` (None: no rule) is written with."""
        if rule is not None and rule in self.by_rule:
            return self.by_rule[rule]
        return self.default

    @classmethod
    def from_plan(cls, plan: "Plan") -> "EncryptionSettings":
        by_rule = {
            rule.name: (rule.metadata.server_side_encryption, rule.metadata.kms_key_id)
            for rule in plan.rules
            if rule.metadata.server_side_encryption
        }
        return cls((plan.destination.server_side_encryption, plan.destination.kms_key_id), by_rule)
