/**
 * Just enough of IAM's policy evaluation to tell whether a role's inline policy denies a
 * request made with one session's credentials, written from the IAM User Guide ("Policy
 * evaluation logic", "Condition element", "Creating a condition with multiple keys or
 * values"): a Deny statement applies when its Action and Resource match and every
 * condition holds; operators in a Condition block are ANDed, keys within an operator are
 * ANDed, the values of one key are ORed; a key absent from the request context makes its
 * condition false (no `...IfExists` here); condition key names are case-insensitive,
 * string values are compared case-sensitively by StringEquals. Only the operators Leash
 * writes are implemented; any other one throws, so a test can never pass by ignoring it.
 */

export interface SessionContext {
  /** Session tags (`aws:PrincipalTag/<key>`). */
  readonly tags: Readonly<Record<string, string>>;
  readonly sourceIdentity: string | undefined;
  /** `aws:TokenIssueTime`, ISO 8601. */
  readonly tokenIssueTime: string;
}

function contextValue(ctx: SessionContext, key: string): string | undefined {
  const k = key.toLowerCase();
  if (k === 'aws:sourceidentity') return ctx.sourceIdentity;
  if (k === 'aws:tokenissuetime') return ctx.tokenIssueTime;
  if (k.startsWith('aws:principaltag/')) {
    const tag = k.slice('aws:principaltag/'.length);
    const hit = Object.entries(ctx.tags).find(([name]) => name.toLowerCase() === tag);
    return hit?.[1];
  }
  throw new Error(`iam-policy-eval: condition key ${key} is not modelled`);
}

function holds(operator: string, key: string, values: unknown, ctx: SessionContext): boolean {
  const actual = contextValue(ctx, key);
  if (actual === undefined) return false;
  const list = (Array.isArray(values) ? values : [values]) as string[];
  switch (operator) {
    case 'StringEquals':
      return list.some((v) => v === actual);
    case 'DateLessThan':
      return list.some((v) => Date.parse(actual) < Date.parse(v));
    default:
      throw new Error(`iam-policy-eval: operator ${operator} is not modelled`);
  }
}

/** True when some Deny statement of the policy document applies to every request of this session. */
export function deniesSession(policyDocument: string | undefined, ctx: SessionContext): boolean {
  if (policyDocument === undefined) return false;
  const doc = JSON.parse(policyDocument) as { Version: string; Statement: unknown };
  if (doc.Version !== '2012-10-17') throw new Error('iam-policy-eval: Version must be 2012-10-17');
  const statements = (Array.isArray(doc.Statement) ? doc.Statement : [doc.Statement]) as Array<Record<string, unknown>>;
  return statements.some((st) => {
    if (st.Effect !== 'Deny' || st.Action !== '*' || st.Resource !== '*') return false;
    const condition = (st.Condition ?? {}) as Record<string, Record<string, unknown>>;
    return Object.entries(condition).every(([operator, keys]) => Object.entries(keys).every(([key, values]) => holds(operator, key, values, ctx)));
  });
}
