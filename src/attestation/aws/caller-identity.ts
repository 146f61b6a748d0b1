/**
 * STS's answer to GetCallerIdentity (`GetCallerIdentityResponse/GetCallerIdentityResult/
 * {Arn, UserId, Account}`), read strictly: each element exactly once, values checked
 * against what AWS documents for them. Anything else is not an answer.
 */

export interface CallerIdentity {
  readonly arn: string;
  readonly account: string;
  readonly userId: string;
  /** The ARN taken apart, as workload attributes. */
  readonly attributes: ReadonlyArray<readonly [string, string]>;
}

const ACCOUNT = /^\d{12}$/;
const USER_ID = /^[A-Za-z0-9:+=,.@_-]{1,256}$/;
/** IAM/STS names: role, user, session names (`[\w+=,.@-]`). */
const NAME = /^[\w+=,.@-]{1,128}$/;
const ARN = /^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):(sts|iam)::(\d{12}):(.{1,1024})$/;

function element(xml: string, name: string): string | undefined {
  const open = `<${name}>`;
  const first = xml.indexOf(open);
  if (first < 0 || xml.indexOf(open, first + 1) >= 0) return undefined;
  const end = xml.indexOf(`</${name}>`, first);
  if (end < 0) return undefined;
  return unescape(xml.slice(first + open.length, end).trim());
}

function unescape(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos);/g, (_m, e: string) => ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" })[e] as string);
}

/** The caller from a 200 answer's body, or undefined if the body is not a well-formed answer. */
export function parseCallerIdentity(xml: string): CallerIdentity | undefined {
  const result = element(xml, 'GetCallerIdentityResult');
  if (result === undefined) return undefined;
  const arn = element(result, 'Arn');
  const userId = element(result, 'UserId');
  const account = element(result, 'Account');
  if (arn === undefined || userId === undefined || account === undefined) return undefined;
  if (!ACCOUNT.test(account) || !USER_ID.test(userId)) return undefined;
  const m = ARN.exec(arn);
  if (!m || m[3] !== account) return undefined;
  const [, partition, service, , resource] = m as unknown as [string, string, string, string, string];
  const attributes: Array<[string, string]> = [
    ['arn', arn],
    ['account', account],
    ['partition', partition],
    ['user_id', userId],
  ];
  const parts = resource.split('/');
  if (service === 'sts' && parts[0] === 'assumed-role' && parts.length === 3 && NAME.test(parts[1]!) && NAME.test(parts[2]!)) {
    const [, role, session] = parts as [string, string, string];
    // UserId of a role session is `<role unique id>:<session name>`.
    const roleId = userId.endsWith(`:${session}`) ? userId.slice(0, -session.length - 1) : undefined;
    if (roleId === undefined || roleId.length === 0) return undefined;
    attributes.push(['principal_type', 'assumed-role'], ['role', role], ['role_arn', `arn:${partition}:iam::${account}:role/${role}`], ['role_id', roleId], ['session_name', session]);
  } else if (service === 'iam' && parts[0] === 'user' && parts.length >= 2 && parts.slice(1).every((p) => NAME.test(p))) {
    attributes.push(['principal_type', 'user'], ['user_name', parts[parts.length - 1]!]);
  } else if (service === 'sts' && parts[0] === 'federated-user' && parts.length === 2 && NAME.test(parts[1]!)) {
    attributes.push(['principal_type', 'federated-user'], ['user_name', parts[1]!]);
  } else if (service === 'iam' && resource === 'root') {
    attributes.push(['principal_type', 'root']);
  } else {
    return undefined;
  }
  return { arn, account, userId, attributes };
}

/** `<ErrorResponse><Error><Code>` of an STS error body (the code only: never the message). */
export function stsErrorCode(xml: string): string | undefined {
  const code = element(xml, 'Code');
  return code !== undefined && /^[A-Za-z.]{1,64}$/.test(code) ? code : undefined;
}
