"""Answering a registry's 401: the WWW-Authenticate challenge (Basic: the credentials; Bearer: a token
from the challenge's realm for `repository:<repo>:pull,push`, fetched with the credentials or
anonymously). Credentials themselves are found by forge.publish.auth.
"""

from __future__ import annotations

import requests

from forge.errors import RegistryAuthFailed, RegistryError, RegistryUnreachable
from forge.publish.auth import Challenge, parse_challenge
from forge.publish.wire import registry_errors


class TokenAuth:
    """The auth half of RegistryClient: needs self.ref, self.credentials, self.session, self.timeout,
    self.stats, self._auth, self._scopes, self._action and self._sent_credentials."""

    # --- auth ------------------------------------------------------------------------------------
    def _denied(self, verb: str) -> RegistryAuthFailed:
        target = f"{self.ref.registry}/{self.ref.repository}"
        if self.credentials is None:
            return RegistryAuthFailed(
                f"{target} needs credentials to {self._action} and forge found none. Run `docker login {self.ref.registry}`, "
                f"or set FORGE_REGISTRY_USER and FORGE_REGISTRY_PASSWORD.")
        return RegistryAuthFailed(
            f"{self.ref.registry} {verb} the {self._action} of {target} as {self.credentials.username!r} (credentials from "
            f"{self.credentials.source}). Check the user name and password (or token) and that the account may "
            f"{self._action} this repository.")

    def _authenticate(self, resp: requests.Response) -> None:
        challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise RegistryAuthFailed(f"{self.ref.registry} answered 401 without a WWW-Authenticate challenge.")
        if challenge.scheme == "basic":
            if self.credentials is None or self._sent_credentials:
                raise self._denied("rejected")
            self._auth = self.credentials.basic_header()
            self._sent_credentials = True
        elif challenge.scheme == "bearer":
            scope = challenge.params.get("scope")
            if scope:
                for s in scope.split(" "):
                    if s not in self._scopes:
                        self._scopes.append(s)
            self._auth = "Bearer " + self._fetch_token(challenge)
        else:
            raise RegistryAuthFailed(f"{self.ref.registry} asks for {challenge.scheme!r} authentication, which "
                                     f"forge does not speak (it speaks Basic and Bearer).")

    def _fetch_token(self, challenge: Challenge) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryAuthFailed(f"{self.ref.registry}'s Bearer challenge names no token realm.")
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        params += [("scope", s) for s in self._scopes]
        creds = self.credentials
        try:
            if creds is not None and creds.identity_token:
                resp = self.session.post(realm, data=params + [("grant_type", "refresh_token"),
                                                               ("refresh_token", creds.secret),
                                                               ("client_id", "forge")], timeout=self.timeout)
            else:
                headers = {"Authorization": creds.basic_header()} if creds is not None else {}
                resp = self.session.get(realm, params=params, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RegistryUnreachable(f"cannot reach the token service {realm} of {self.ref.registry}: "
                                      f"{exc.__class__.__name__}.") from None
        self.stats.requests += 1
        if resp.status_code in (401, 403):
            raise self._denied("rejected")
        if resp.status_code != 200:
            raise RegistryError(f"the token service {realm} answered {resp.status_code}: {registry_errors(resp)}")
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise RegistryError(f"the token service {realm} answered without a token.")
        if creds is not None:
            self._sent_credentials = True
        return token
