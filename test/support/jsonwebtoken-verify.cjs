// Verifies a token the way a plain Node/Express resource server commonly does: jwks-rsa
// fetches the key by kid, jsonwebtoken verifies. Run as its own process (plain Node, CommonJS,
// as such a consumer runs), not inside jest's module loader. Prints one JSON line.
// Usage: node jsonwebtoken-verify.cjs <jwks-uri> <token> <issuer> <audience>
const jwt = require('jsonwebtoken');
const jwksClient = require('jwks-rsa');

const [jwksUri, token, issuer, audience] = process.argv.slice(2);
(async () => {
  try {
    const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString('utf8'));
    const key = await jwksClient({ jwksUri, cache: false }).getSigningKey(header.kid);
    const claims = jwt.verify(token, key.getPublicKey(), { issuer, audience, algorithms: [header.alg] });
    process.stdout.write(`${JSON.stringify({ ok: true, sub: claims.sub })}\n`);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: String(err && err.message) })}\n`);
  }
})();
