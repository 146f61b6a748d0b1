/**
 * What a grant's approval and DPoP come to once the settings' defaults apply: read by the
 * policy compiler, the guardrails checked at load and the review.
 */

import { SENDER_CONSTRAINABLE_KINDS } from '../formats/token-types.js';
import { APPROVAL_BY_DEFAULT_EFFECTS, type ApprovalRule, type GrantConfig, type PluginConfig, type Settings } from './schema.js';

/** The grant's approval rule, or the default its effect and the plugin's tier imply. */
export function effectiveApproval(spec: GrantConfig, plugin: PluginConfig, settings: Settings): ApprovalRule {
  // Unless the grant says otherwise, effects that change or send out data, and plugins of
  // the risk tiers the settings name, wait for a person.
  return spec.approval ?? (APPROVAL_BY_DEFAULT_EFFECTS.has(spec.effect) || (settings.approvals.required_for_risk as readonly string[]).includes(plugin.risk) ? 'human' : 'none');
}

/** Whether tokens of this grant are DPoP-bound: the grant's own `dpop: required` or the plugin's tier. */
export function effectiveDpop(spec: GrantConfig, plugin: PluginConfig, settings: Settings): boolean {
  // A risk tier's DPoP rule applies only where a proof binds something (`dpop: required` on
  // other kinds is refused at load).
  return SENDER_CONSTRAINABLE_KINDS.has(spec.kind ?? 'jwt') && (spec.dpop === 'required' || (settings.dpop.required_for_risk as readonly string[]).includes(plugin.risk));
}
