"""The target layer's answers to the protocol layer (session.TargetPolicy): who may log in
to which node, with what authentication, and what SendTargets reports.

One policy per portal group and local address: the portal group decides which PG-IG maps
apply, and the local address is what SendTargets advertises for wildcard portals.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spydk.iscsi.auth import ChapSettings
from spydk.iscsi.chap import ChapCredentials
from spydk.iscsi.iscsi_tgt import IscsiTarget
from spydk.iscsi.portal_group import PortalGroup
from spydk.iscsi.session import AuthRequirement, TargetInfo
from spydk.iscsi.spec import LoginStatus
from spydk.iscsi.target_node import TargetNode


def requirement(chap: ChapSettings) -> AuthRequirement:
    if chap.disable:
        return AuthRequirement.NONE
    if chap.require:
        return AuthRequirement.MUTUAL_CHAP if chap.mutual else AuthRequirement.CHAP
    return AuthRequirement.OPTIONAL


@dataclass
class PortalPolicy:
    target: IscsiTarget
    group: PortalGroup
    local_host: str  # the address the connection arrived on
    local_port: str
    # The connection's own TargetConfig: a node's queue_depth sets its session's window.
    config: Any = None
    session_count: Callable[[], int] = field(default=lambda: 0)

    def info(self, node: TargetNode) -> TargetInfo:
        return TargetInfo(node.name, node.alias, self.group.tag, requirement(node.chap),
                          node.header_digest, node.data_digest, node)

    def authorize(self, target_name: str, initiator_name: str, initiator_address: str
                  ) -> TargetInfo | LoginStatus:
        node = self.target.find_node(target_name)
        if node is None:
            return LoginStatus.NOT_FOUND
        if not node.in_portal_group(self.group.tag):
            # Reachable only through other portal groups: as if it were not here.
            return LoginStatus.NOT_FOUND
        if not node.access_allowed(initiator_name, initiator_address, self.group.tag,
                                   self.target.initiator_groups):
            return LoginStatus.AUTHORIZATION_FAILURE
        if self.session_count() >= self.target.options.max_sessions:
            return LoginStatus.OUT_OF_RESOURCES
        if self.config is not None:
            self.config.queue_depth = min(node.queue_depth, self.target.options.max_queue_depth)
        return self.info(node)

    def _discovery_chap(self) -> ChapSettings:
        return self.group.chap if self.group.chap is not None else self.target.options.discovery_chap

    def discovery_auth(self, initiator_name: str, initiator_address: str) -> AuthRequirement:
        return requirement(self._discovery_chap())

    def chap_credentials(self, user: str, target: TargetInfo | None) -> ChapCredentials | None:
        if target is None:
            group = self._discovery_chap().group
        else:
            node = target.context
            group = node.chap.group if isinstance(node, TargetNode) else 0
        if group == 0:
            return None
        s = self.target.find_secret(group, user)
        return s.credentials() if s is not None else None

    def send_targets(self, query: str, initiator_name: str, initiator_address: str,
                     session_target: TargetInfo | None) -> list[tuple[str, list[str]]]:
        if query == "" and session_target is not None:
            query = session_target.name
        elif query == "":
            return []
        return self.target.send_targets(initiator_name, initiator_address, query,
                                        self.local_host, self.local_port, self.group.tag)
