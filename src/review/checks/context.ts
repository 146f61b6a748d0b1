import type { LeashConfig, PluginConfig, GrantConfig } from '../../config/schema.js';
import type { Finding, FindingInput } from '../finding.js';
import type { GuardrailReport } from '../../config/guardrails.js';
import type { UseSummary } from '../evidence.js';
import type { Suspension } from '../../store/records.js';

/** A published signing key as the review sees it. */
export interface KeyFact {
  readonly kid: string;
  readonly state: string;
  readonly createdAt: number;
}

/** Everything one review looks at. */
export interface ReviewContext {
  readonly config: LeashConfig;
  readonly guardrails: GuardrailReport;
  readonly now: number;
  /** Issuance, denials, approvals from the store; undefined: policy-only review. */
  readonly use: UseSummary | undefined;
  /** Suspended plugins (store), when known. */
  readonly suspensions: readonly Suspension[] | undefined;
  /** Published signing keys, when known (the broker's KeyManager, or the local keyring). */
  readonly keys: readonly KeyFact[] | undefined;
}

export type Emit = (finding: FindingInput) => void;
export type Check = (ctx: ReviewContext, emit: Emit) => void;

/** Every grant with its plugin and JSON pointer, in config order. */
export function* grantsOf(config: LeashConfig): Generator<{ plugin: PluginConfig; p: number; grant: GrantConfig; g: number; at: string }> {
  for (const [p, plugin] of (config.plugins ?? []).entries()) {
    for (const [g, grant] of (plugin.grants ?? []).entries()) yield { plugin, p, grant, g, at: `/plugins/${p}/grants/${g}` };
  }
}

export const STATE_CHANGING: ReadonlySet<string> = new Set(['write', 'exfiltrate', 'admin']);

export type { Finding };
