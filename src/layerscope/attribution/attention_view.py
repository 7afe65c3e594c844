"""An interactive attention view (head view + model view) as a self-contained HTML fragment.

Payload: for every layer and head, the ``top_k`` strongest keys of each query row, as base64 of uint16 key
indices and uint8 weights (weight × 255, rounded) — 3 bytes per kept entry, so 512 tokens × 30 layers × 9
heads at top-8 is about 4.4 MB of base64 instead of 280 MB of float32. Layers are decoded lazily (only when
shown), drawing is on ``<canvas>``, and nothing is loaded from the network.
"""

from __future__ import annotations

import base64
import html
import json
import uuid

import numpy as np

from ..errors import ConfigError


def _encode_layer(pat: np.ndarray, top_k: int) -> dict[str, str]:
    """``pat``: ``[heads, pos, pos]`` -> base64 of top-k indices (uint16) and weights (uint8), row-major."""
    p = pat.shape[1]
    k = min(top_k, p)
    idx = np.argsort(-pat, axis=-1, kind="stable")[..., :k]  # heads, pos, k
    val = np.take_along_axis(pat, idx, axis=-1)
    q = np.clip(np.rint(val * 255), 0, 255).astype(np.uint8)
    return {
        "i": base64.b64encode(idx.astype("<u2").tobytes()).decode("ascii"),
        "v": base64.b64encode(q.tobytes()).decode("ascii"),
    }


def attention_view_html(tokens: list[str], patterns: np.ndarray, *, top_k: int = 8, title: str = "") -> str:
    """HTML fragment (trusted markup; token strings are escaped into JSON) with a head view and a model view.

    Args:
        tokens: the ``pos`` token strings.
        patterns: ``[n_layers, n_heads, pos, pos]`` attention probabilities.
        top_k: keys kept per query row (the rest are dropped from the payload).
        title: a heading shown above the view.
    """
    pats = np.asarray(patterns, dtype=np.float32)
    if pats.ndim != 4 or pats.shape[-1] != pats.shape[-2] or pats.shape[-1] != len(tokens):
        raise ConfigError(
            f"patterns must be [layers, heads, pos, pos] with pos = {len(tokens)} tokens, got {pats.shape}"
        )
    if top_k < 1:
        raise ConfigError(f"top_k must be positive, got {top_k}")
    L, H, P, _ = pats.shape
    payload = {
        "tokens": [str(t) for t in tokens],
        "L": L,
        "H": H,
        "P": P,
        "K": min(top_k, P),
        "layers": [_encode_layer(pats[layer], top_k) for layer in range(L)],
    }
    data = json.dumps(payload, ensure_ascii=True).replace("</", "<\\/")
    uid = "attn" + uuid.uuid4().hex[:8]
    return (
        _TEMPLATE.replace("__UID__", uid).replace("__TITLE__", html.escape(title)).replace("__DATA__", data)
    )


_TEMPLATE = """
<div id="__UID__" class="ls-attn" style="font:13px system-ui,sans-serif">
  <div style="font-weight:600;margin:4px 0">__TITLE__</div>
  <label>layer <select class="ls-layer"></select></label>
  <span class="ls-heads" style="margin-left:12px"></span>
  <button class="ls-model" style="margin-left:12px">model view</button>
  <div style="position:relative;overflow:auto;max-height:640px"><canvas class="ls-head"></canvas></div>
  <div class="ls-grid" style="display:none;overflow:auto;max-height:640px"></div>
</div>
<script type="application/json" id="__UID__-data">__DATA__</script>
<script>
(function(){
  const root = document.getElementById("__UID__");
  const D = JSON.parse(document.getElementById("__UID__-data").textContent);
  const cache = {};
  const COL = ["#0072B2","#E69F00","#009E73","#CC79A7","#56B4E9","#D55E00","#F0E442","#999999"];
  function b64(s){const b=atob(s);const u=new Uint8Array(b.length);for(let i=0;i<b.length;i++)u[i]=b.charCodeAt(i);return u;}
  function layer(l){  // lazy decode: {idx: Uint16Array, val: Uint8Array}, [head][row][k]
    if(!cache[l]){const e=D.layers[l];const ib=b64(e.i);cache[l]={idx:new Uint16Array(ib.buffer),val:b64(e.v)};}
    return cache[l];
  }
  const sel = root.querySelector(".ls-layer");
  for(let l=0;l<D.L;l++){const o=document.createElement("option");o.value=l;o.textContent=l;sel.appendChild(o);}
  const heads = new Array(D.H).fill(true);
  const hs = root.querySelector(".ls-heads");
  for(let h=0;h<D.H;h++){const c=document.createElement("input");c.type="checkbox";c.checked=true;
    c.onchange=()=>{heads[h]=c.checked;draw();};const lab=document.createElement("label");
    lab.style.color=COL[h%COL.length];lab.append(c," "+h+" ");hs.appendChild(lab);}
  const cv = root.querySelector(".ls-head"); const ctx = cv.getContext("2d");
  const ROW=16, W=180, GAP=160; let hover=-1;
  cv.width = 2*W+GAP; cv.height = D.P*ROW+8;
  function draw(){
    const L=layer(+sel.value); ctx.clearRect(0,0,cv.width,cv.height); ctx.font="12px system-ui"; ctx.textBaseline="middle";
    for(let i=0;i<D.P;i++){const y=i*ROW+ROW/2+4; ctx.fillStyle=i===hover?"#000":"#444";
      ctx.textAlign="right"; ctx.fillText(D.tokens[i].slice(0,24),W-6,y); ctx.textAlign="left"; ctx.fillText(D.tokens[i].slice(0,24),W+GAP+6,y);}
    for(let h=0;h<D.H;h++){ if(!heads[h]) continue; ctx.strokeStyle=COL[h%COL.length];
      const rows = hover>=0?[hover]:[...Array(D.P).keys()];
      for(const i of rows){ for(let k=0;k<D.K;k++){ const o=(h*D.P+i)*D.K+k; const v=L.val[o]/255; if(v<0.02) continue;
        const j=L.idx[o]; ctx.globalAlpha=hover>=0?v:v*0.35; ctx.lineWidth=hover>=0?2:1; ctx.beginPath();
        ctx.moveTo(W,i*ROW+ROW/2+4); ctx.lineTo(W+GAP,j*ROW+ROW/2+4); ctx.stroke(); } } }
    ctx.globalAlpha=1;
  }
  cv.onmousemove=(e)=>{const r=cv.getBoundingClientRect();const x=e.clientX-r.left;const i=Math.floor((e.clientY-r.top-4)/ROW);
    const nh=(x<W&&i>=0&&i<D.P)?i:-1; if(nh!==hover){hover=nh;draw();}};
  cv.onmouseleave=()=>{hover=-1;draw();};
  sel.onchange=draw;
  const grid=root.querySelector(".ls-grid"); const btn=root.querySelector(".ls-model");
  btn.onclick=()=>{ const show=grid.style.display==="none"; grid.style.display=show?"block":"none";
    btn.textContent=show?"hide model view":"model view"; if(show&&!grid.dataset.done){buildGrid();grid.dataset.done=1;} };
  function buildGrid(){  // layer x head thumbnails, each layer drawn when it scrolls into view
    const S=Math.min(96,Math.max(32,D.P)); const obs=new IntersectionObserver((es)=>{for(const e of es){
      if(e.isIntersecting&&!e.target.dataset.done){e.target.dataset.done=1;drawRow(+e.target.dataset.l,e.target,S);}}});
    for(let l=0;l<D.L;l++){const row=document.createElement("div");row.dataset.l=l;row.style.whiteSpace="nowrap";
      row.style.minHeight=(S+4)+"px";row.title="layer "+l;grid.appendChild(row);obs.observe(row);}
  }
  function drawRow(l,row,S){ const L=layer(l);
    for(let h=0;h<D.H;h++){ const c=document.createElement("canvas"); c.width=S; c.height=S; c.title="layer "+l+", head "+h;
      c.style.margin="2px"; c.style.border="1px solid #ddd"; const g=c.getContext("2d"); const img=g.createImageData(S,S);
      const sc=S/D.P; for(let i=0;i<D.P;i++){ for(let k=0;k<D.K;k++){ const o=(h*D.P+i)*D.K+k; const v=L.val[o]; if(!v) continue;
        const x=Math.floor(L.idx[o]*sc), y=Math.floor(i*sc), p=(y*S+x)*4; img.data[p]=0; img.data[p+1]=114; img.data[p+2]=178;
        img.data[p+3]=Math.max(img.data[p+3],v); } }
      g.putImageData(img,0,0); c.onclick=()=>{sel.value=l; heads.fill(false); heads[h]=true;
        hs.querySelectorAll("input").forEach((el,j)=>{el.checked=j===h;}); draw(); cv.scrollIntoView();};
      row.appendChild(c); } }
  draw();
})();
</script>
"""
