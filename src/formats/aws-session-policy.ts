/** What a session policy is built from: an `aws-sts` grant's `actions` and `resources`. */
export interface SessionPolicyScope {
  readonly actions: readonly string[];
  readonly resources: readonly string[];
}

/** AWS: "The plaintext that you use for both inline and managed session policies can't exceed 2,048 characters." */
export const SESSION_POLICY_MAX_CHARS = 2048;

/**
 * The inline session policy that narrows the role to exactly the grant: one Allow statement
 * over the grant's actions and resources, in config order. Compact JSON (no whitespace) so
 * the same grant always yields the same string and every character counts against the
 * limit only once.
 */
export function sessionPolicy(aws: SessionPolicyScope): string {
  if (aws.actions.length === 0 || aws.resources.length === 0) {
    throw new TypeError('sessionPolicy: a grant needs at least one action and one resource');
  }
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Action: [...aws.actions], Resource: [...aws.resources] }],
  });
}

/**
 * A problem to report at config load when the session policy would be too large for AWS,
 * or undefined. Checked at load so an oversize grant is a config error, not a failed call.
 */
export function checkSessionPolicy(aws: SessionPolicyScope): string | undefined {
  // Empty lists are the schema's to report (minItems); this check only measures.
  if (aws.actions.length === 0 || aws.resources.length === 0) return undefined;
  const length = sessionPolicy(aws).length;
  if (length <= SESSION_POLICY_MAX_CHARS) return undefined;
  return `the session policy built from actions and resources is ${length} characters; AWS allows at most ` + `${SESSION_POLICY_MAX_CHARS}: use fewer or wildcarded resources, or split the grant`;
}
