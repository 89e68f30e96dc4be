"""The iSCSI login phase (RFC 7143 section 6): stages, text negotiation, CHAP, session creation
or joining, the move to Full Feature Phase."""
from __future__ import annotations

from functools import partial

from spydk.iscsi import spec
from spydk.iscsi.chap import ChapCredentials, ChapError, ChapTarget
from spydk.iscsi.conn_core import (
    DISCOVERY_ACCEPTS,
    LOGIN_TRANSITIONS,
    STAGE_OF,
    ConnectionCore,
    ConnState,
    LoginComplete,
)
from spydk.iscsi.negotiation import (
    Limits,
    NegotiationError,
    Negotiator,
    encode_text,
    parse_text,
    split_text,
)
from spydk.iscsi.pdu import Pdu
from spydk.iscsi.session import (
    AuthRequirement,
    SessionType,
    TargetInfo,
)
from spydk.iscsi.spec import LoginStatus, Opcode, RejectReason, Stage


class LoginPhase(ConnectionCore):
    """Mixin of Connection: the login phase."""

    def _login_fail(self, status: LoginStatus, pdu: Pdu | None, reason: str) -> None:
        isid, tsih, itt = self.isid or b"\0" * 6, self._login_tsih, 0
        if pdu is not None and pdu.opcode == Opcode.LOGIN_REQ:
            f = spec.LOGIN_REQ.unpack_from(pdu.header)
            isid, tsih, itt = f[5], f[6], f[7]
        elif pdu is not None:
            itt = pdu.itt
        exp, mx = self._window()
        hdr = spec.LOGIN_RSP.pack(Opcode.LOGIN_RSP, 0, 0, 0, 0, isid, tsih, itt, self._next_stat_sn(), exp, mx,
                                  status.status_class, status.detail)
        self._send(hdr)
        self._fail(reason, status)

    def _on_login(self, pdu: Pdu) -> None:
        (_, flags, _vmax, vmin, _, isid, tsih, itt, cid, cmd_sn, exp_stat_sn) = spec.LOGIN_REQ.unpack_from(pdu.header)
        transit = bool(flags & spec.LOGIN_TRANSIT)
        cont = bool(flags & spec.LOGIN_CONTINUE)
        csg = (flags & spec.LOGIN_CSG_MASK) >> spec.LOGIN_CSG_SHIFT
        nsg = flags & spec.LOGIN_NSG_MASK
        if not self._login_started:
            self._login_started = True
            self.isid, self._login_tsih, self.cid = isid, tsih, cid
            self.stat_sn = exp_stat_sn
            self._login_cmd_sn = cmd_sn
            if vmin > spec.ISCSI_VERSION:
                return self._login_fail(LoginStatus.UNSUPPORTED_VERSION, pdu, "unsupported version")
            if csg == Stage.OPERATIONAL:
                self.state = ConnState.OPERATIONAL  # security stage skipped; checked below
        elif isid != self.isid or tsih != self._login_tsih or cid != self.cid:
            return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, "login identity changed")
        if transit and cont:
            return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, "T and C both set")
        if csg != STAGE_OF[self.state]:
            return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, "wrong login stage")
        if self._login_rsp_chunks:
            # The initiator is pulling the rest of a long response.
            if pdu.data:
                return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, "data while response pending")
            chunk = self._login_rsp_chunks.pop(0)
            if self._login_rsp_chunks:
                self._login_respond(itt, isid, csg, 0, False, chunk, True)
                return None
            # Last part: now the transition decided on the original request happens.
            nsg_p, go_p, state_p = self._login_rsp_transit
            self._login_respond(itt, isid, csg, nsg_p if go_p else 0, go_p, chunk, False)
            if go_p:
                self.state = state_p
                if state_p is ConnState.FULL_FEATURE:
                    self._enter_full_feature()
            return None
        try:
            self._login_text.add(pdu.data)
        except NegotiationError as e:
            return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, str(e))
        if cont:
            self._login_respond(itt, isid, csg, 0, False, b"", False)
            return None
        try:
            pairs = parse_text(self._login_text.take())
        except NegotiationError as e:
            return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, str(e))
        answers: list[tuple[str, str]] = []
        if self._negotiator is None:
            status = self._login_identify(dict(pairs), answers)
            if status is not None:
                return self._login_fail(status, pdu, "login refused: " + status.name)
            if self.state is ConnState.OPERATIONAL and self._auth_req in (AuthRequirement.CHAP,
                                                                           AuthRequirement.MUTUAL_CHAP):
                return self._login_fail(LoginStatus.AUTH_FAILURE, pdu, "authentication required")
        neg = self._negotiator
        assert neg is not None
        security = csg == Stage.SECURITY
        try:
            if security:
                answers += self._login_security(pairs)
            elif any(k == "AuthMethod" or k.startswith("CHAP_") for k, _ in pairs):
                raise NegotiationError("security keys in operational stage")
            answers += neg.answer(pairs, in_login=True, security_stage=security)
        except ChapError as e:
            return self._login_fail(LoginStatus.AUTH_FAILURE, pdu, str(e))
        except NegotiationError as e:
            return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, str(e))
        go = False
        new_state = self.state
        if transit:
            try:
                new_state = LOGIN_TRANSITIONS[(self.state, Stage(nsg))]
            except (KeyError, ValueError):
                return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, "bad NSG")
            go = True
            if security and not self._auth_done():
                if self._auth_method == "CHAP" and self._chap is not None and not self._chap.done:
                    go = False  # keep going with the CHAP exchange
                else:
                    return self._login_fail(LoginStatus.AUTH_FAILURE, pdu, "not authenticated")
            if go and not self._mrdsl_declared and (new_state is ConnState.FULL_FEATURE or not security):
                answers.append(("MaxRecvDataSegmentLength", str(neg.conn.max_recv_data_segment)))
                self._mrdsl_declared = True
        elif not security and not self._mrdsl_declared:
            answers.append(("MaxRecvDataSegmentLength", str(neg.conn.max_recv_data_segment)))
            self._mrdsl_declared = True
        final = go and new_state is ConnState.FULL_FEATURE
        if final:
            status = self._login_finish()
            if status is not None:
                return self._login_fail(status, pdu, "login refused: " + status.name)
        text = encode_text(answers)
        chunks = split_text(text, self.max_send_data) if len(text) > self.max_send_data else [text]
        if len(chunks) > 1:
            # Send the first part with C=1 and no transit; the initiator pulls the rest.
            self._login_rsp_chunks = chunks[1:]
            self._login_rsp_transit = (nsg, go, new_state)
            self._login_respond(itt, isid, csg, 0, False, chunks[0], True)
            return None
        self._login_respond(itt, isid, csg, nsg if go else 0, go, text, False)
        if go:
            self.state = new_state
            if final:
                self._enter_full_feature()
        return None

    def _login_respond(self, itt: int, isid: bytes, csg: int, nsg: int, transit: bool, text: bytes,
                       more: bool) -> None:
        flags = (spec.LOGIN_TRANSIT if transit else 0) | (spec.LOGIN_CONTINUE if more else 0) | (csg << 2) | nsg
        final = transit and nsg == Stage.FULL_FEATURE
        tsih = self.session.tsih if final and self.session is not None else self._login_tsih
        exp, mx = self._window()
        hdr = spec.LOGIN_RSP.pack(Opcode.LOGIN_RSP, flags, spec.ISCSI_VERSION, spec.ISCSI_VERSION, len(text), isid,
                                  tsih, itt, self._next_stat_sn(), exp, mx, 0, 0)
        self._send(hdr, text)

    def _login_identify(self, keys: dict[str, str], answers: list[tuple[str, str]]) -> LoginStatus | None:
        """First login PDU: who is this, what do they want, may they."""
        iname = keys.get("InitiatorName")
        if not iname:
            return LoginStatus.MISSING_PARAMETER
        self.initiator_name = iname
        stype = keys.get("SessionType", "Normal")
        if stype == "Discovery":
            self._session_type = SessionType.DISCOVERY
            self._auth_req = self.policy.discovery_auth(iname, self.initiator_address)
        elif stype == "Normal":
            tname = keys.get("TargetName")
            if not tname:
                return LoginStatus.MISSING_PARAMETER
            got = self.policy.authorize(tname, iname, self.initiator_address)
            if isinstance(got, LoginStatus):
                return got
            self.target = got
            self._auth_req = got.auth
        else:
            return LoginStatus.SESSION_TYPE_NOT_SUPPORTED
        leading = self._login_tsih == 0
        if not leading:
            s = self.registry.get(self._login_tsih)
            if (s is None or s.closed or s.initiator_name != iname or s.isid != self.isid
                    or s.session_type is not self._session_type
                    or (s.target.name if s.target else None) != (self.target.name if self.target else None)):
                return LoginStatus.SESSION_DOES_NOT_EXIST
            if self.cid not in s.connections and len(s.connections) >= s.params.max_connections:
                return LoginStatus.TOO_MANY_CONNECTIONS
            self._join = s
        limits = self.config.limits
        if self.target is not None and (self.target.header_digest_required or self.target.data_digest_required):
            limits = Limits(**{k: getattr(limits, k) for k in limits.__dataclass_fields__})
            if self.target.header_digest_required:
                limits.header_digests = ("CRC32C",)
            if self.target.data_digest_required:
                limits.data_digests = ("CRC32C",)
        self._negotiator = Negotiator(limits, leading=leading,
                                      discovery=self._session_type is SessionType.DISCOVERY)
        if self.target is not None:
            answers.append(("TargetPortalGroupTag", str(self.target.portal_group_tag)))
            if self.target.alias:
                answers.append(("TargetAlias", self.target.alias))
        return None

    def _login_security(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        chap_keys: dict[str, str] = {}
        for k, v in pairs:
            if k == "AuthMethod":
                if self._auth_method is not None:
                    raise NegotiationError("AuthMethod negotiated twice")
                req = self._auth_req
                allowed = {AuthRequirement.NONE: ("None",), AuthRequirement.OPTIONAL: ("None", "CHAP"),
                           AuthRequirement.CHAP: ("CHAP",), AuthRequirement.MUTUAL_CHAP: ("CHAP",)}[req]
                choice = next((o for o in v.split(",") if o in allowed), None)
                if choice is None:
                    raise ChapError("no acceptable AuthMethod")
                self._auth_method = choice
                if choice == "CHAP":
                    self._chap = ChapTarget(partial(self._chap_lookup, self.target),
                                            mutual_required=req is AuthRequirement.MUTUAL_CHAP,
                                            token_bytes=self._token_bytes)
                out.append(("AuthMethod", choice))
            elif k.startswith("CHAP_"):
                if k in chap_keys:
                    raise NegotiationError("CHAP key repeated")
                chap_keys[k] = v
        if chap_keys:
            if self._chap is None:
                raise ChapError("CHAP keys without AuthMethod=CHAP")
            out += self._chap.step(chap_keys)
        return out

    def _chap_lookup(self, target: TargetInfo | None, user: str) -> ChapCredentials | None:
        return self.policy.chap_credentials(user, target)

    def _auth_done(self) -> bool:
        m = self._auth_method
        if m == "CHAP":
            return self._chap is not None and self._chap.done
        if m == "None":
            return True
        return self._auth_req in (AuthRequirement.NONE, AuthRequirement.OPTIONAL)

    def _login_finish(self) -> LoginStatus | None:
        neg = self._negotiator
        assert neg is not None
        neg.finish()
        t = self.target
        if t is not None and ((t.header_digest_required and not neg.conn.header_digest)
                              or (t.data_digest_required and not neg.conn.data_digest)):
            return LoginStatus.INITIATOR_ERROR
        if self._join is not None:
            s = self._join
            if s.closed:
                return LoginStatus.SESSION_DOES_NOT_EXIST
            old = s.connections.get(self.cid)
            if old is not None and old is not self:
                old.fail("connection reinstated")
        else:
            old_s = self.registry.find(self.initiator_name, self.isid, t.name if t else None)
            if old_s is not None:
                # Session reinstatement (ERL 0): the old session and its connections go.
                for c in list(old_s.connections.values()):
                    c.fail("session reinstated")
                self.registry.remove(old_s)
            s = self.registry.create(self.isid, self.initiator_name, self._session_type, t, neg.session,
                                     self._login_cmd_sn, self.config.queue_depth)
        s.connections[self.cid] = self
        self.session = s
        return None

    def _enter_full_feature(self) -> None:
        neg = self._negotiator
        assert neg is not None and self.session is not None
        self._hd = neg.conn.header_digest
        self._dd = neg.conn.data_digest
        self.initiator_port = f"{self.initiator_name},i,0x{self.isid.hex()}"
        self.max_send_data = neg.conn.max_send_data_segment
        r = self.reader
        r.header_digest = self._hd
        r.data_digest = self._dd
        r.set_max_data_segment(neg.conn.max_recv_data_segment)
        self._params = self.session.params
        if self.session.discovery:
            for op in list(self._dispatch):
                if op not in DISCOVERY_ACCEPTS:
                    self._dispatch[op] = self._not_in_discovery
        self._events.append(LoginComplete(self.session, self._join is None))

    def _not_in_discovery(self, pdu: Pdu) -> None:
        self._release_staged()
        self._reject(RejectReason.PROTOCOL_ERROR, pdu.header)
