import { TIMELINE_STYLE } from '../../usage/timeline-html.js';

/**
 * The console's one stylesheet, served as /console/assets/console.css (the CSP allows no
 * inline style). Colours keep WCAG AA contrast on white; focus is always visible.
 */
const BASE = `
:root{color-scheme:light;--fg:#1f2328;--muted:#57606a;--line:#d0d7de;--bg2:#f6f8fa;--ok:#1a7f37;--bad:#a40e26;--accent:#0550ae}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:var(--fg);background:#fff;font-size:15px;line-height:1.45}
a{color:var(--accent)}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible{outline:3px solid #0969da;outline-offset:2px}
.skip{position:absolute;left:-9999px}
.skip:focus{left:8px;top:8px;background:#fff;padding:6px;z-index:2}
header{display:flex;flex-wrap:wrap;align-items:center;gap:16px;padding:10px 24px;border-bottom:1px solid var(--line);background:var(--bg2)}
header .brand{font-weight:700;margin-right:8px}
nav ul{list-style:none;display:flex;gap:4px;margin:0;padding:0;flex-wrap:wrap}
nav a{display:block;padding:6px 10px;border-radius:6px;text-decoration:none;color:var(--fg)}
nav a[aria-current="page"]{background:#fff;border:1px solid var(--line);font-weight:600}
.who{margin-left:auto;display:flex;align-items:center;gap:10px;font-size:14px;color:var(--muted)}
main{padding:16px 24px 48px;max-width:1200px}
h1{font-size:22px;margin:4px 0 12px}
h2{font-size:18px;margin:20px 0 8px}
h3{font-size:16px;margin:0 0 8px}
.flash{padding:8px 12px;border-radius:6px;margin:0 0 12px;border:1px solid}
.flash.ok{background:#dafbe1;border-color:#4ac26b}
.flash.error{background:#ffebe9;border-color:#ff8182}
.muted{color:var(--muted)}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 14px;margin:0 0 12px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0 0 10px}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0;overflow-wrap:anywhere}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:14px;margin:0 0 12px}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:var(--bg2)}
form.inline{display:inline}
.actions{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-end}
label{display:block;font-size:13px;color:var(--muted);margin-bottom:2px}
input[type=text],input[type=search],select{font:inherit;padding:5px 8px;border:1px solid #8c959f;border-radius:6px;min-width:16em}
button{font:inherit;padding:5px 12px;border-radius:6px;border:1px solid #8c959f;background:#fff;color:var(--fg);cursor:pointer}
button.approve{background:var(--ok);border-color:var(--ok);color:#fff}
button.danger{background:var(--bad);border-color:var(--bad);color:#fff}
button:disabled{background:#eaeef2;border-color:var(--line);color:#57606a;cursor:not-allowed}
.why{font-size:13px;color:#7d4e00;margin:6px 0 0}
.badge{display:inline-block;padding:0 7px;border-radius:10px;font-size:12px;border:1px solid var(--line);background:var(--bg2)}
.sev-critical,.risk-critical{background:#ffebe9;border-color:#a40e26;color:#a40e26}
.sev-high,.risk-high{background:#fff1e5;border-color:#953800;color:#953800}
.sev-medium,.risk-medium{background:#fff8c5;border-color:#7d4e00;color:#7d4e00}
.suspended{background:#ffebe9;border-color:#a40e26;color:#a40e26}
.filters{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-end;margin:0 0 12px}
.timeline{overflow-x:auto;border:1px solid var(--line);border-radius:8px;margin:0 0 8px}
ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:14px;font-size:12px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
`;

/** Legend swatches of the task timeline, one class per kind (the colours of the picture). */
const SWATCHES = Object.entries(TIMELINE_STYLE)
  .map(([kind, s]) => `.sw-${kind}{background:${s.color}}`)
  .join('\n');

export const CONSOLE_CSS = `${BASE.trim()}\n${SWATCHES}\n`;
