import { backoffDelay } from '../../client/backoff.js';
import type { Credentials, STSClient } from '@aws-sdk/client-sts';
import { stsSdk } from './aws-sdk.js';
import type { AwsGrantConfig, AwsSettingsConfig } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import type { KeyManager } from '../../keys/key-manager.js';
import { signJwt } from '../../keys/jws.js';
import type { Clock } from '../../time/clock.js';
import type { CredentialIssuer, IssueRequest, IssuedCredential } from '../credential-issuer.js';
import { TOKEN_TYPE_AWS_CREDENTIALS } from '../../formats/token-types.js';
import { roleSessionName, sessionDuration, sourceIdentity, tagValue } from './names.js';
import { SESSION_POLICY_MAX_CHARS, sessionPolicy } from '../../formats/aws-session-policy.js';
import { createStsClient, type AwsStsMode } from './sts-client.js';
import { classifyStsError, stsLeashError } from './sts-errors.js';
import { randomId } from '../../formats/random-id.js';

/** Claims AWS reads from a web identity token for session tags and source identity. */
export const AWS_TAGS_CLAIM = 'https://aws.amazon.com/tags';
export const AWS_SOURCE_IDENTITY_CLAIM = 'https://aws.amazon.com/source_identity';

export const TAG_PLUGIN = 'leash:plugin';
export const TAG_TASK = 'leash:task';
export const TAG_RISK = 'leash:risk';

/** Backoff between attempts: exponential from BASE, capped, with jitter (AWS "equal jitter"). */
const BACKOFF_BASE_MS = 100;
const BACKOFF_CAP_MS = 2_000;

export interface AwsStsIssuerDeps {
  /** Leash's issuer URL: `iss` of the web identity tokens (the IAM OIDC provider URL). */
  readonly issuer: string;
  readonly keys: KeyManager;
  /** Read per call so a policy reload takes effect. */
  readonly settings: () => AwsSettingsConfig;
  readonly clock: Clock;
  /** Default: a real STS client per (region, endpoint, mode), see createStsClient. */
  readonly stsClient?: (region: string, endpoint: string | undefined, mode: AwsStsMode) => STSClient;
  /** Waits between attempts (tests record the delays instead of waiting). */
  readonly sleep?: (ms: number) => Promise<void>;
  /** [0, 1); for the jitter. */
  readonly random?: () => number;
}

/** The `aws_credentials` member of the token response. */
export interface AwsCredentialsBody {
  readonly access_key_id: string;
  readonly secret_access_key: string;
  readonly session_token: string;
  /** ISO 8601 */
  readonly expiration: string;
}

/** Delay before attempt `attempt + 1` (attempt counts from 1). */
export function stsBackoffDelay(attempt: number, random: () => number): number {
  return backoffDelay(attempt, { baseMs: BACKOFF_BASE_MS, capMs: BACKOFF_CAP_MS, random });
}

function sessionTags(req: IssueRequest): { key: string; value: string }[] {
  return [
    { key: TAG_PLUGIN, value: tagValue(req.plugin.id) },
    { key: TAG_TASK, value: tagValue(req.task?.id ?? 'none') },
    { key: TAG_RISK, value: tagValue(req.plugin.risk) },
  ];
}

/**
 * `aws-sts` credentials: AWS temporary credentials for the grant's role, narrowed by an
 * inline session policy to the grant's actions and resources, attributed to the plugin and
 * task (session name, source identity, session tags), for the shortest duration AWS allows.
 *
 * web-identity (default): Leash signs a short token naming the plugin and calls
 * AssumeRoleWithWebIdentity unsigned; AWS trusts Leash's discovery and JWKS, so Leash holds
 * no AWS secret. assume-role: Leash's own credentials (default provider chain) sign AssumeRole.
 */
export function createAwsStsIssuer(deps: AwsStsIssuerDeps): CredentialIssuer {
  const clients = new Map<string, STSClient>();
  const makeClient = deps.stsClient ?? ((region, endpoint, mode) => createStsClient({ region, endpoint, mode }));
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const random = deps.random ?? Math.random;

  function client(settings: AwsSettingsConfig, mode: AwsStsMode): STSClient {
    // Keyed on what the client is built from, so a reload that moves the endpoint gets a new one.
    const key = `${mode} ${settings.region} ${settings.sts_endpoint ?? ''}`;
    let c = clients.get(key);
    if (!c) {
      c = makeClient(settings.region, settings.sts_endpoint, mode);
      clients.set(key, c);
    }
    return c;
  }

  async function webIdentityToken(req: IssueRequest, settings: AwsSettingsConfig, aws: AwsGrantConfig): Promise<string> {
    const key = deps.keys.current();
    const iat = Math.floor(req.now / 1000);
    let exp = iat + settings.web_identity_token_ttl;
    // AWS must still find the key in the JWKS when it verifies.
    if (key.visibleUntil !== undefined) exp = Math.min(exp, Math.floor(key.visibleUntil / 1000));
    const tags = sessionTags(req);
    const tagsClaim: Record<string, unknown> = { principal_tags: Object.fromEntries(tags.map((t) => [t.key, [t.value]])) };
    if (aws.transitive_tags) tagsClaim.transitive_tag_keys = tags.map((t) => t.key);
    const payload: Record<string, unknown> = {
      iss: deps.issuer,
      sub: req.plugin.id,
      aud: settings.web_identity_audience,
      iat,
      nbf: iat,
      exp,
      jti: randomId(),
      plugin: req.plugin.id,
      task: req.task?.id ?? 'none',
      [AWS_SOURCE_IDENTITY_CLAIM]: sourceIdentity(req.plugin.id),
      [AWS_TAGS_CLAIM]: tagsClaim,
    };
    return signJwt(key, { typ: 'JWT' }, payload);
  }

  async function send(req: IssueRequest, settings: AwsSettingsConfig, aws: AwsGrantConfig): Promise<Credentials | undefined> {
    const common = {
      RoleArn: aws.role_arn,
      RoleSessionName: roleSessionName(req.plugin.id, req.task?.id),
      Policy: sessionPolicy(aws),
      DurationSeconds: sessionDuration(req.ttl, aws.role_max_session),
    };
    if (common.Policy.length > SESSION_POLICY_MAX_CHARS) {
      // Config validation reports this at load; this guards a config that skipped it.
      throw new LeashError('ERR_UPSTREAM_TARGET_INVALID', `this grant's session policy exceeds AWS's ${SESSION_POLICY_MAX_CHARS}-character limit; the grant's aws settings need fixing`);
    }
    const mode: AwsStsMode = aws.mode ?? 'web-identity';
    const sts = client(settings, mode);
    const { AssumeRoleCommand, AssumeRoleWithWebIdentityCommand } = stsSdk();
    // Web-identity tags and source identity travel inside the signed token, never as parameters.
    // A fresh command per attempt, so no SDK request state carries over.
    let call: () => Promise<Credentials | undefined>;
    if (mode === 'web-identity') {
      const input = { ...common, WebIdentityToken: await webIdentityToken(req, settings, aws) };
      call = async () => (await sts.send(new AssumeRoleWithWebIdentityCommand(input))).Credentials;
    } else {
      const tags = sessionTags(req);
      const input = {
        ...common,
        SourceIdentity: sourceIdentity(req.plugin.id),
        Tags: tags.map((t) => ({ Key: t.key, Value: t.value })),
        ...(aws.transitive_tags ? { TransitiveTagKeys: tags.map((t) => t.key) } : {}),
      };
      call = async () => (await sts.send(new AssumeRoleCommand(input))).Credentials;
    }
    const maxAttempts = Math.max(1, settings.max_attempts);
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        const failure = classifyStsError(err);
        if (failure.class === 'retryable' && attempt < maxAttempts) {
          await sleep(stsBackoffDelay(attempt, random));
          continue;
        }
        throw stsLeashError(failure, attempt, err);
      }
    }
  }

  return {
    kind: 'aws-sts',
    async issue(req: IssueRequest): Promise<IssuedCredential> {
      const aws = req.grant.config.aws;
      if (!aws) throw new TypeError(`aws-sts issuer: grant for ${req.audience} has no aws settings (config validation should have refused it)`);
      const settings = deps.settings();
      const creds = await send(req, settings, aws);
      const { AccessKeyId, SecretAccessKey, SessionToken, Expiration } = creds ?? {};
      // Through getTime, not instanceof: the SDK's Date may come from another realm.
      const expiresAt = Expiration === undefined ? Number.NaN : new Date(Expiration).getTime();
      if (!AccessKeyId || !SecretAccessKey || !SessionToken || Number.isNaN(expiresAt)) {
        throw new LeashError('ERR_UPSTREAM_UNAVAILABLE', 'AWS STS gave an incomplete answer; retry later', { aws_error: 'IncompleteCredentials' });
      }
      const aws_credentials: AwsCredentialsBody = {
        access_key_id: AccessKeyId,
        secret_access_key: SecretAccessKey,
        session_token: SessionToken,
        expiration: new Date(expiresAt).toISOString(),
      };
      return {
        body: {
          access_token: SessionToken,
          issued_token_type: TOKEN_TYPE_AWS_CREDENTIALS,
          token_type: 'N_A',
          expires_in: Math.max(0, Math.floor((expiresAt - deps.clock.now()) / 1000)),
          aws_credentials,
        },
        record: {
          // The access key id identifies the session in CloudTrail; the secret never leaves this function.
          jti: `aws:${AccessKeyId}`,
          plugin: req.plugin.id,
          task: req.task?.id,
          audience: req.audience,
          scopes: [...req.scopes],
          kind: 'aws-sts',
          kid: undefined,
          issuedAt: req.now,
          expiresAt,
          // AWS credentials cannot be sender-constrained.
          jkt: undefined,
        },
      };
    },
  };
}
