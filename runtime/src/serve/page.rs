//! The default live-view page: the stream, the state as a table, and the caller's controls.
//! No external scripts or styles: boards are often on networks without internet.

/// The page for `title`, with `controls` (HTML) under the stream. Controls post actions with
/// `postAction(name, object)`, defined here.
pub fn default_page(title: &str, controls: &str) -> String {
    let title = html_escape(title);
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 1em; background: #111; color: #eee; }}
#view {{ max-width: 100%; image-rendering: pixelated; border: 1px solid #444; }}
table {{ border-collapse: collapse; margin-top: .5em; }}
td {{ padding: .1em .8em; border-bottom: 1px solid #333; font-family: monospace; }}
.fail {{ color: #f55; font-weight: bold; }} .pass {{ color: #5d5; font-weight: bold; }}
</style></head>
<body>
<h1>{title}</h1>
<img id="view" src="/stream.mjpg" alt="live stream">
<div id="controls">{controls}</div>
<table id="state"></table>
<script>
// With --token, the page is opened as /?token=SECRET and every action carries the secret.
const TOKEN = new URLSearchParams(location.search).get('token');
function postAction(name, body) {{
  const headers = {{'Content-Type': 'application/json'}};
  if (TOKEN) headers['X-Edgeslim-Token'] = TOKEN;
  return fetch('/action/' + name, {{method: 'POST', headers: headers, body: JSON.stringify(body)}});
}}
function cell(v) {{
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(4);
  if (typeof v === 'object' && v !== null) return JSON.stringify(v);
  return String(v);
}}
async function refresh() {{
  try {{
    const s = await (await fetch('/state.json', {{cache: 'no-store'}})).json();
    const t = document.getElementById('state');
    t.innerHTML = '';
    for (const [k, v] of Object.entries(s)) {{
      const r = t.insertRow(); r.insertCell().textContent = k;
      const c = r.insertCell(); c.textContent = cell(v);
      if (v === 'FAIL') c.className = 'fail'; if (v === 'PASS') c.className = 'pass';
    }}
  }} catch (e) {{}}
}}
setInterval(refresh, 500); refresh();
</script>
</body></html>
"#
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
