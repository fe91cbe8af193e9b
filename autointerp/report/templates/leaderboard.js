(function(){
function headRow(t){return t.tHead.rows[t.tHead.rows.length-1];}
function cellVal(row, i){var c=row.cells[i];return c?c.getAttribute('data-v'):'';}
function sortTable(table, i, asc){
  var tb=table.tBodies[0], rows=Array.prototype.slice.call(tb.rows);
  rows.sort(function(a,b){
    var x=cellVal(a,i), y=cellVal(b,i);
    if(x===''&&y==='')return 0; if(x==='')return 1; if(y==='')return -1;
    var nx=Number(x), ny=Number(y), c;
    c=(!isNaN(nx)&&!isNaN(ny))?(nx-ny):x.localeCompare(y);
    return asc?c:-c;
  });
  rows.forEach(function(r){tb.appendChild(r);});
  Array.prototype.forEach.call(headRow(table).cells,function(th,j){
    if(j===i)th.setAttribute('aria-sort',asc?'ascending':'descending');
    else th.removeAttribute('aria-sort');
  });
}
document.querySelectorAll('table.lb').forEach(function(t){
  Array.prototype.forEach.call(headRow(t).cells,function(th,i){
    th.addEventListener('click',function(){
      sortTable(t,i,th.getAttribute('aria-sort')!=='ascending');
    });
  });
});
var hash={};
location.hash.replace(/^#/,'').split('&').forEach(function(kv){
  var p=kv.split('=');if(p[0])hash[decodeURIComponent(p[0])]=decodeURIComponent(p[1]||'');
});
if(hash.sort){
  document.querySelectorAll('table.lb').forEach(function(t){
    Array.prototype.forEach.call(headRow(t).cells,function(th,i){
      if(th.getAttribute('data-key')===hash.sort)sortTable(t,i,hash.dir==='asc');
    });
  });
}
var data=JSON.parse(document.getElementById('feature-data').textContent);
var sel=document.getElementById('feat-select'), view=document.getElementById('feat-view');
function el(tag, text, cls){var e=document.createElement(tag);
  if(text!==undefined&&text!==null)e.textContent=String(text); if(cls)e.className=cls; return e;}
function tokLine(label, tokens, acts, rgb, scale){
  var d=el('div',null,'ex'); d.appendChild(el('span',label,'lbl'));
  tokens.forEach(function(tok,i){
    var a=acts&&acts[i]!=null?acts[i]:0, s=el('span',tok.replace(/\n/g,'\u21b5'),'tok');
    var alpha=scale>0?Math.max(0,Math.min(1,a/scale)):0;
    s.style.backgroundColor='rgba('+rgb+','+alpha.toFixed(3)+')';
    s.title=(acts&&acts[i]!=null)?String(acts[i]):''; d.appendChild(s);
  });
  return d;
}
function maxOf(xs){var m=0;(xs||[]).forEach(function(v){if(v!=null&&v>m)m=v;});return m;}
function show(key){
  view.textContent='';
  var f=null; data.forEach(function(x){if(x.key===key)f=x;});
  if(!f){view.appendChild(el('p','No feature selected.','note'));return;}
  view.setAttribute('data-key',f.key);
  view.appendChild(el('h3',f.run+' \u2014 '+f.basis+' #'+f.feature));
  var ex=el('div',f.explanation||'(no explanation)','expl'); ex.id='feat-explanation';
  view.appendChild(ex);
  var meta='density '+(f.density==null?'?':f.density)+', max act '+(f.max_act==null?'?':f.max_act);
  if(f.explanation_status&&f.explanation_status!=='ok')meta+=', explanation '+f.explanation_status;
  view.appendChild(el('p',meta,'note'));
  var st=el('table',null,'lb'), tb=el('tbody');
  Object.keys(f.scores).forEach(function(k){var tr=el('tr');tr.appendChild(el('td',k));
    tr.appendChild(el('td',f.scores[k]));tb.appendChild(tr);});
  st.appendChild(tb); view.appendChild(st);
  view.appendChild(el('h4','Top examples (background = activation)'));
  if(!f.top.length)view.appendChild(el('p','no records for this feature','note'));
  f.top.forEach(function(e){view.appendChild(tokLine('act',e.tokens,e.acts,'255,140,0',maxOf(e.acts)));});
  view.appendChild(el('h4','Test examples: true vs simulated activation'));
  if(!f.sims.length)view.appendChild(el('p','no simulations for this feature','note'));
  f.sims.forEach(function(e){
    var sc=Math.max(maxOf(e.true),maxOf(e.pred),1e-9);
    view.appendChild(el('div','['+e.kind+']','note'));
    view.appendChild(tokLine('true',e.tokens,e.true,'255,140,0',sc));
    view.appendChild(tokLine('sim',e.tokens,e.pred,'30,120,255',sc));
  });
}
data.forEach(function(f){var o=el('option',f.basis+' #'+f.feature+' \u2014 '+f.run);
  o.value=f.key; sel.appendChild(o);});
sel.addEventListener('change',function(){show(sel.value);});
if(data.length){var k=hash.feature&&data.some(function(x){return x.key===hash.feature;})?
  hash.feature:data[0].key; sel.value=k; show(k);} else show(null);
document.body.setAttribute('data-ready','1');
})();
