/*
 * `npm run bench -- --suite full` writes what it printed into docs/performance.md, between
 * two markers, with the machine and the date: the document always shows the last full run
 * as the bench printed it, not a hand-copied table.
 */

export const SECTION_START = '<!-- bench:full:start (written by `npm run bench -- --suite full`; edits here are replaced) -->';
export const SECTION_END = '<!-- bench:full:end -->';

export interface FullRunReport {
  readonly date: Date;
  readonly machine: { readonly nproc: number; readonly cpu: string; readonly memoryGiB: number; readonly node: string; readonly platform: string };
  readonly loadAverage: { readonly start: readonly number[]; readonly end: readonly number[] };
  readonly minutes: number;
  readonly command: string;
  readonly suites: ReadonlyArray<{ readonly suite: string; readonly ok: boolean; readonly text: string; readonly minutes?: number }>;
}

/** The Markdown the markers enclose: one heading, the machine line, then each suite's printout as a code block. */
export function renderFullRun(r: FullRunReport): string {
  const fmt = (l: readonly number[]) => l.map((n) => n.toFixed(2)).join(' ');
  const lines = [
    `### Last full run: ${r.date.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    '',
    `\`${r.command}\`, ${r.minutes.toFixed(1)} min. Machine: ${r.machine.nproc} CPUs (${r.machine.cpu}), ${r.machine.memoryGiB} GiB, ${r.machine.platform}, Node ${r.machine.node}; load average ${fmt(r.loadAverage.start)} at the start, ${fmt(r.loadAverage.end)} at the end.`,
  ];
  for (const s of r.suites) {
    lines.push(
      '',
      `**${s.suite}**${s.minutes === undefined ? '' : ` (${s.minutes.toFixed(1)} min)`}${s.ok ? '' : ' (FAILED: its output below is partial)'}`,
      '',
      '```text',
      s.text.trim() || '(no output)',
      '```',
    );
  }
  return lines.join('\n');
}

/**
 * Replaces what lies between the markers in `doc` with `body`. A document without both
 * markers (in order) is refused rather than appended to: where the run goes is the
 * document's choice.
 */
export function replaceSection(doc: string, body: string): string {
  const start = doc.indexOf(SECTION_START);
  const end = doc.indexOf(SECTION_END);
  if (start < 0 || end < 0 || end < start) throw new Error(`the document has no '${SECTION_START}' … '${SECTION_END}' section to write the run into`);
  if (doc.indexOf(SECTION_START, start + 1) >= 0 || doc.indexOf(SECTION_END, end + 1) >= 0) throw new Error('the document has more than one bench:full section');
  return `${doc.slice(0, start + SECTION_START.length)}\n\n${body.trim()}\n\n${doc.slice(end)}`;
}
