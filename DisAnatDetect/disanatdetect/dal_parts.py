"""DAL's parts that an ablation sets unlike the release, in one table that the ``train`` command's options and the
evaluation harness's row names both read. Each key is a switch of :class:`disanatdetect.models.DALConfig`; this module
imports no torch, so the command line builds its options without loading the networks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PartSetting:
    """One setting of a DAL part: the ``train`` option that trains it, how a harness row names it, what it means."""

    flag: str
    name: str
    meaning: str


# Each DALConfig switch with its (on, off) settings.
DAL_PARTS: dict[str, tuple[PartSetting, PartSetting]] = {
    "use_restoration": (
        PartSetting("--with-restoration", "with restoration", "DAL whose decoder renders the restored anatomy"),
        PartSetting("--no-restoration", "w/o restoration", "DAL whose decoder renders the encoded anatomy")),
    "hard_one_hot": (
        PartSetting("--hard-anatomy", "hard anatomy", "DAL with one-hot anatomy (straight-through), trained so"),
        PartSetting("--soft-anatomy", "soft anatomy", "DAL with soft (class-probability) anatomy, trained so")),
    "use_priors": (
        PartSetting("--with-priors", "with priors", "DAL with the atlas priors as network inputs"),
        PartSetting("--no-priors", "w/o priors", "DAL without the atlas priors as network inputs")),
}


def part_setting(key: str, value: bool) -> PartSetting:
    """The setting of DAL's part ``key`` (a :class:`DALConfig` switch) that ``value`` selects."""
    return DAL_PARTS[key][0 if value else 1]
