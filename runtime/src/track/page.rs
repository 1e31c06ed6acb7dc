//! The tracker's live page: the MJPEG stream (the box is drawn into the frames), an overlay
//! with FPS, latency and confidence from `/state.json`, and a click-drag on the image that
//! posts `init {x, y, w, h}` in frame pixels to (re)initialise the target. No external files.

pub fn tracker_page(title: &str) -> String {
    let title = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 1em; background: #111; color: #eee; }}
#wrap {{ position: relative; display: inline-block; user-select: none; }}
#view {{ max-width: 100%; display: block; border: 1px solid #444; cursor: crosshair; }}
#sel {{ position: absolute; border: 2px dashed #ff0; display: none; pointer-events: none; }}
#hud {{ position: absolute; left: 6px; top: 6px; background: rgba(0,0,0,.6); padding: 4px 8px;
        font-family: monospace; font-size: 13px; pointer-events: none; }}
.lost {{ color: #f55; }} .tracking {{ color: #5d5; }}
</style></head>
<body>
<h1>{title}</h1>
<p>Drag a box around an object to track it.</p>
<div id="wrap"><img id="view" src="/stream.mjpg" alt="live stream" draggable="false">
<div id="sel"></div><div id="hud">waiting for state…</div></div>
<script>
const img = document.getElementById('view'), sel = document.getElementById('sel');
const hud = document.getElementById('hud');
let start = null;
// Positions are taken in the image's content box (inside its border), which is what maps
// onto the frame's pixels.
function pos(e) {{
  const b = img.getBoundingClientRect();
  const r = {{left: b.left + img.clientLeft, top: b.top + img.clientTop, width: img.clientWidth, height: img.clientHeight}};
  return [Math.min(Math.max(e.clientX - r.left, 0), r.width), Math.min(Math.max(e.clientY - r.top, 0), r.height), r];
}}
img.addEventListener('mousedown', e => {{ e.preventDefault(); start = pos(e); sel.style.display = 'block'; draw(start, start); }});
window.addEventListener('mousemove', e => {{ if (start) draw(start, pos(e)); }});
window.addEventListener('mouseup', e => {{
  if (!start) return;
  const end = pos(e), r = end[2];
  sel.style.display = 'none';
  const sx = img.naturalWidth / r.width, sy = img.naturalHeight / r.height;
  const x = Math.min(start[0], end[0]) * sx, y = Math.min(start[1], end[1]) * sy;
  const w = Math.abs(end[0] - start[0]) * sx, h = Math.abs(end[1] - start[1]) * sy;
  start = null;
  if (w >= 4 && h >= 4) postAction('init', {{x: x, y: y, w: w, h: h}});
}});
function draw(a, b) {{
  sel.style.left = (img.clientLeft + Math.min(a[0], b[0])) + 'px'; sel.style.top = (img.clientTop + Math.min(a[1], b[1])) + 'px';
  sel.style.width = Math.abs(b[0] - a[0]) + 'px'; sel.style.height = Math.abs(b[1] - a[1]) + 'px';
}}
// With --token, the page is opened as /?token=SECRET and every action carries the secret.
const TOKEN = new URLSearchParams(location.search).get('token');
function postAction(name, body) {{
  const headers = {{'Content-Type': 'application/json'}};
  if (TOKEN) headers['X-Edgeslim-Token'] = TOKEN;
  return fetch('/action/' + name, {{method: 'POST', headers: headers, body: JSON.stringify(body)}});
}}
async function refresh() {{
  try {{
    const s = await (await fetch('/state.json', {{cache: 'no-store'}})).json();
    const f = v => (typeof v === 'number') ? v.toFixed(1) : '-';
    if (s.source_state === 'reconnecting') {{
      hud.innerHTML = '<span class="lost">source lost, reconnecting</span> | ';
      hud.appendChild(document.createTextNode(s.source_error || ''));
      return;
    }}
    hud.innerHTML = `<span class="${{s.state}}">${{s.state}}</span> conf ${{f(s.confidence)}}` +
      ` | ${{f(s.fps)}} fps | search ${{f(s.search_ms)}} ms | template ${{f(s.template_ms)}} ms` +
      ` | to viewer p50 ${{f(s.delivery_ms && s.delivery_ms.p50)}} ms | frame ${{s.frame}}`;
  }} catch (e) {{}}
}}
setInterval(refresh, 300); refresh();
</script>
</body></html>
"#
    )
}
