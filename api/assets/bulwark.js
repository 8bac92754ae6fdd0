// bulwark's pages work without JavaScript except for passkeys, which only
// a script can ask the browser for (WebAuthn). This file does that and
// nothing else: it fetches the ceremony's options from this origin, asks
// navigator.credentials, and submits the answer through the page's own
// form (with its CSRF field), so the server's answer is an ordinary page.
"use strict";
(function () {
  function b64urlToBytes(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function bytesToB64url(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function creds(list) {
    return (list || []).map(function (c) {
      var o = { type: c.type, id: b64urlToBytes(c.id) };
      if (c.transports) o.transports = c.transports;
      return o;
    });
  }
  // The server's options (base64url strings) as the browser wants them.
  function requestOptions(pk) {
    var o = Object.assign({}, pk, { challenge: b64urlToBytes(pk.challenge) });
    if (pk.allowCredentials) o.allowCredentials = creds(pk.allowCredentials);
    return o;
  }
  function creationOptions(pk) {
    var o = Object.assign({}, pk, { challenge: b64urlToBytes(pk.challenge) });
    o.user = Object.assign({}, pk.user, { id: b64urlToBytes(pk.user.id) });
    if (pk.excludeCredentials) o.excludeCredentials = creds(pk.excludeCredentials);
    return o;
  }
  // The authenticator's answer as JSON (WebAuthn level 3's toJSON form).
  function credentialJSON(c) {
    var r = c.response, resp = { clientDataJSON: bytesToB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      resp.attestationObject = bytesToB64url(r.attestationObject);
      if (r.getTransports) resp.transports = r.getTransports();
    } else {
      resp.authenticatorData = bytesToB64url(r.authenticatorData);
      resp.signature = bytesToB64url(r.signature);
      if (r.userHandle) resp.userHandle = bytesToB64url(r.userHandle);
    }
    return JSON.stringify({
      id: c.id, rawId: bytesToB64url(c.rawId), type: c.type, response: resp,
      authenticatorAttachment: c.authenticatorAttachment || undefined,
      clientExtensionResults: c.getClientExtensionResults ? c.getClientExtensionResults() : {}
    });
  }
  function say(msg) {
    var box = document.getElementById("error");
    if (!box) return;
    box.textContent = "";
    if (msg) {
      var p = document.createElement("p");
      p.className = "error";
      p.textContent = msg;
      box.appendChild(p);
    }
  }
  function failed(err) {
    if (err && err.name === "NotAllowedError") {
      say("The passkey was not used. Try again, or use another way to sign in.");
    } else if (err && err.name === "InvalidStateError") {
      say("This passkey is registered already.");
    } else {
      say((err && err.message) || "The passkey did not work. Try again.");
    }
  }
  async function ceremony(url, body, headers) {
    var resp = await fetch(url, { method: "POST", credentials: "same-origin", headers: headers, body: body });
    var data = await resp.json().catch(function () { return {}; });
    if (!resp.ok) {
      var e = new Error(data.error_description ? data.error_description.charAt(0).toUpperCase() + data.error_description.slice(1) + "." : "The server refused the request.");
      e.code = data.error;
      throw e;
    }
    return data;
  }
  function busy(form, on) {
    var b = form.querySelector("button[type=submit]");
    if (b) b.disabled = on;
  }

  if (!window.PublicKeyCredential || !navigator.credentials) return;

  // Sign-in: the passkey as the second factor of this login.
  var login = document.getElementById("passkey-login");
  if (login) {
    login.hidden = false;
    login.addEventListener("submit", async function (ev) {
      if (login.elements.credential.value) return; // the answer: let it go
      ev.preventDefault();
      say("");
      busy(login, true);
      try {
        var begin = await ceremony("/v1/auth/webauthn/begin",
          JSON.stringify({ mfa_token: login.dataset.mfaToken }), { "Content-Type": "application/json" });
        var cred = await navigator.credentials.get({ publicKey: requestOptions(begin.publicKey) });
        login.elements.challenge_id.value = begin.challenge_id;
        login.elements.credential.value = credentialJSON(cred);
        login.submit();
      } catch (err) {
        busy(login, false);
        failed(err);
      }
    });
  }

  // Sign-in page: a passkey alone (a discoverable credential that
  // verifies its user: two factors in one).
  var signin = document.getElementById("passkey-signin");
  if (signin) {
    signin.hidden = false;
    signin.addEventListener("submit", async function (ev) {
      if (signin.elements.credential.value) return;
      ev.preventDefault();
      say("");
      busy(signin, true);
      try {
        var begin = await ceremony("/v1/auth/webauthn/begin", "{}", { "Content-Type": "application/json" });
        var cred = await navigator.credentials.get({ publicKey: requestOptions(begin.publicKey) });
        signin.elements.challenge_id.value = begin.challenge_id;
        signin.elements.credential.value = credentialJSON(cred);
        signin.submit();
      } catch (err) {
        busy(signin, false);
        failed(err);
      }
    });
  }

  // Account page: register a new passkey.
  var add = document.getElementById("passkey-add");
  if (add) {
    add.hidden = false;
    var nojs = document.getElementById("passkey-nojs");
    if (nojs) nojs.hidden = true;
    add.addEventListener("submit", async function (ev) {
      if (add.elements.credential.value) return;
      ev.preventDefault();
      say("");
      busy(add, true);
      try {
        var body = new URLSearchParams({ csrf_token: add.elements.csrf_token.value, name: add.elements.namedItem("name").value });
        var begin = await ceremony("/account/passkeys/begin", body, {});
        var cred = await navigator.credentials.create({ publicKey: creationOptions(begin.publicKey) });
        add.elements.challenge_id.value = begin.challenge_id;
        add.elements.credential.value = credentialJSON(cred);
        add.submit();
      } catch (err) {
        busy(add, false);
        if (err && err.code === "insufficient_user_authentication") {
          window.location.assign("/login?reauth=1");
          return;
        }
        failed(err);
      }
    });
  }
})();
