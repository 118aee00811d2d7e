"""The flows, written once for every channel; `build_registry` lists them all."""

from __future__ import annotations

from bot.flows import Registry
from handlers import (
    bulletin,
    bulletin_admin,
    console,
    coordinator,
    declaration,
    language,
    menu,
    organization,
    privacy,
    referral,
    reply,
    report,
    sign,
    signatures,
)


def build_registry() -> Registry:
    """Every flow the bot runs, and the deep links (/start <name>) that open them."""
    return Registry(
        [
            language.FLOW,  # first contact, and the Language escape
            menu.FLOW,
            declaration.FLOW,
            bulletin.FLOW,
            bulletin_admin.FLOW,  # coordinators only
            report.FLOW,
            report.MINE,
            privacy.MYDATA,
            privacy.FORGET,
            coordinator.REPORTS,  # coordinators only, like everything in coordinator.py
            coordinator.DETAIL,
            coordinator.EXPORT,
            sign.FLOW,
            sign.SIGNED,
            signatures.PENDING,  # coordinators only
            signatures.DETAIL,
            console.FLOW,  # a sign-in link for people with a role
            reply.FLOW,  # a family's answer to the coordinators' message
            organization.FLOW,  # a verified signatory organization and its colleagues
            organization.JOIN,
            referral.REFER,  # coordinators only: a report to an organization, and the figures
            referral.FIGURES,
            referral.DECLINE,  # an organization's member answers a referral
            referral.HELPED,
            referral.CONFIRM,  # the family says whether the help came
        ],
        deep_links={
            "declaration": "declaration",
            "bulletin": "bulletin",
            "report": "report",
            "myreports": "myreports",
            "sign": "sign",
            "signed": "signed",
        },
        commands={
            "mydata": "mydata",
            "forget": "forget",
            "reports": "reports",
            "report": "report_detail",
            "export": "export",
            "signatures": "signatures",
            "bulletin": "bulletin_admin",
            "console": "console",
            "organization": "organization",
            "join": "join",
            "referrals": "referrals",
        },
        actions={
            **coordinator.ACTIONS,
            **signatures.ACTIONS,
            **reply.ACTIONS,
            **referral.ACTIONS,
        },
        keywords=bulletin.KEYWORDS,
    )
