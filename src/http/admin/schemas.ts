import { Type } from '@sinclair/typebox';

/**
 * Why an admin acted: it goes into the audit trail. 3 to 500 characters, at least 3 of
 * them once surrounding blanks are trimmed (the handlers store it trimmed).
 */
export const RequiredReason = Type.String({ minLength: 3, maxLength: 500, pattern: '^\\s*\\S[\\s\\S]+\\S\\s*$', description: 'why (3 to 500 characters); recorded in the audit trail' });
