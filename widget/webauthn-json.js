// WebAuthn <-> JSON for the issuer's pages: base64url, options parsing and
// credential serialization in the shapes of WebAuthn L3 (…JSON dictionaries).
//
// Browsers that ship PublicKeyCredential.parseCreationOptionsFromJSON /
// parseRequestOptionsFromJSON / toJSON() are used as they are; the manual
// paths below do the same for older ones. Either way the SPC `payment`
// extension input is carried over by hand, because a browser's JSON parser
// may only know the extensions it implements itself.

export function bufferToBase64url(buffer) {
  const bytes = buffer instanceof ArrayBuffer ? new Uint8Array(buffer)
    : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function base64urlToBuffer(value) {
  if (typeof value !== "string" || !/^[A-Za-z0-9_-]*$/.test(value)) {
    throw new TypeError("expected an unpadded base64url string");
  }
  const binary = atob(value.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

const descriptor = (d) => ({ ...d, id: base64urlToBuffer(d.id) });

function withPaymentExtension(options, json) {
  const payment = json.extensions?.payment;
  if (payment !== undefined && options.extensions?.payment === undefined) {
    options.extensions = { ...options.extensions, payment };
  }
  return options;
}

/** PublicKeyCredentialCreationOptionsJSON -> options for navigator.credentials.create(). */
export function parseCreationOptions(json) {
  if (typeof PublicKeyCredential?.parseCreationOptionsFromJSON === "function") {
    return withPaymentExtension(PublicKeyCredential.parseCreationOptionsFromJSON(json), json);
  }
  return {
    ...json,
    challenge: base64urlToBuffer(json.challenge),
    user: { ...json.user, id: base64urlToBuffer(json.user.id) },
    excludeCredentials: (json.excludeCredentials ?? []).map(descriptor),
  };
}

/** PublicKeyCredentialRequestOptionsJSON -> options for navigator.credentials.get(). */
export function parseRequestOptions(json) {
  if (typeof PublicKeyCredential?.parseRequestOptionsFromJSON === "function") {
    return withPaymentExtension(PublicKeyCredential.parseRequestOptionsFromJSON(json), json);
  }
  return {
    ...json,
    challenge: base64urlToBuffer(json.challenge),
    allowCredentials: (json.allowCredentials ?? []).map(descriptor),
  };
}

// Extension outputs may hold binary values (e.g. prf); the server ignores
// them for security decisions but must still receive valid JSON.
function jsonValue(value) {
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return bufferToBase64url(value);
  if (Array.isArray(value)) return value.map(jsonValue);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonValue(v)]));
  }
  return value;
}

/** A PublicKeyCredential from create() or get() -> RegistrationResponseJSON / AuthenticationResponseJSON. */
export function credentialToJSON(credential) {
  if (typeof credential.toJSON === "function") return credential.toJSON();
  const r = credential.response;
  const response = { clientDataJSON: bufferToBase64url(r.clientDataJSON) };
  if ("attestationObject" in r) {
    response.attestationObject = bufferToBase64url(r.attestationObject);
    response.transports = r.getTransports?.() ?? [];
    const authenticatorData = r.getAuthenticatorData?.();
    if (authenticatorData) response.authenticatorData = bufferToBase64url(authenticatorData);
    const publicKey = r.getPublicKey?.();
    if (publicKey) response.publicKey = bufferToBase64url(publicKey);
    const algorithm = r.getPublicKeyAlgorithm?.();
    if (algorithm !== undefined) response.publicKeyAlgorithm = algorithm;
  } else {
    response.authenticatorData = bufferToBase64url(r.authenticatorData);
    response.signature = bufferToBase64url(r.signature);
    if (r.userHandle) response.userHandle = bufferToBase64url(r.userHandle);
  }
  return {
    id: credential.id,
    rawId: bufferToBase64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment ?? undefined,
    response,
    clientExtensionResults: jsonValue(credential.getClientExtensionResults()),
  };
}

// Answer before the user clicks, so the merchant page can react at once:
// "unsupported", "permission_missing" or null when the frame can work.
export async function detectProblem(method, features) {
  if (!window.PublicKeyCredential || !navigator.credentials?.[method]) return "unsupported";
  // Chromium exposes the effective policy; elsewhere the ceremony's error tells.
  const policy = document.featurePolicy;
  if (policy && !features.some((feature) => policy.allowsFeature(feature))) return "permission_missing";
  try {
    if (!(await PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable())) return "unsupported";
  } catch {
    return "unsupported";
  }
  return null;
}
