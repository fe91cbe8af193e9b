(function(){
var META=JSON.parse(document.getElementById('meta').textContent);
var F={}; META.fields.forEach(function(n,i){F[n]=i;});
var rows=[],view=[],feats={},requested={},nList=0,PAGE=100;
var st={q:'',sort:'score',dir:'desc',m:0,page:0,open:''};
var $=function(id){return document.getElementById(id);};
function el(tag,text,cls){var e=document.createElement(tag);
  if(text!==undefined&&text!==null)e.textContent=String(text);if(cls)e.className=cls;return e;}
function fmt(v,nd){if(v===null||v===undefined)return '';
  if(typeof v!=='number')return String(v);
  if(v!==0&&Math.abs(v)<1e-3)return v.toExponential(2);return v.toFixed(nd===undefined?3:nd);}
function readHash(){var h=location.hash.replace(/^#/,'');
  h.split('&').forEach(function(kv){if(!kv)return;var i=kv.indexOf('=');
    var k=i<0?kv:kv.slice(0,i),v=i<0?'':decodeURIComponent(kv.slice(i+1).replace(/\+/g,' '));
    if(k==='q')st.q=v;else if(k==='sort')st.sort=v;else if(k==='dir')st.dir=v;
    else if(k==='page')st.page=parseInt(v,10)||0;else if(k==='open')st.open=v;
    else if(k==='m'){var j=META.methods.indexOf(v);st.m=j<0?(parseInt(v,10)||0):j;}});}
function writeHash(){var p=[];if(st.q)p.push('q='+encodeURIComponent(st.q));
  p.push('sort='+st.sort,'dir='+st.dir);if(META.methods.length>1)
    p.push('m='+encodeURIComponent(META.methods[st.m]||''));
  if(st.page)p.push('page='+st.page);if(st.open)p.push('open='+encodeURIComponent(st.open));
  try{history.replaceState(null,'','#'+p.join('&'));}catch(e){}}
function sc(r,k){var s=r[F.scores][st.m];return s?s[k]:null;}
var KEYS={score:function(r){return sc(r,0);},lift:function(r){return sc(r,2);},
  density:function(r){return r[F.density];},feature:function(r){return r[F.feature];}};
function compute(){var terms=st.q.toLowerCase().split(/\s+/).filter(Boolean);
  view=terms.length?rows.filter(function(r){var h=r.hay;
    for(var i=0;i<terms.length;i++)if(h.indexOf(terms[i])<0)return false;return true;})
    :rows.slice();
  var key=KEYS[st.sort]||KEYS.score,sg=st.dir==='asc'?1:-1;
  view.sort(function(a,b){var x=key(a),y=key(b);
    if(x===null||x===undefined){if(!(y===null||y===undefined))return 1;}
    else if(y===null||y===undefined)return -1;else if(x!==y)return sg*(x<y?-1:1);
    if(a[F.basis]!==b[F.basis])return a[F.basis]<b[F.basis]?-1:1;
    return a[F.feature]-b[F.feature];});}
function render(){var n=view.length,pages=Math.max(1,Math.ceil(n/PAGE));
  if(st.page>=pages)st.page=pages-1;if(st.page<0)st.page=0;
  var tb=$('rows');tb.textContent='';var a=st.page*PAGE,b=Math.min(n,a+PAGE);
  for(var i=a;i<b;i++){var r=view[i],tr=document.createElement('tr');
    var key=r[F.basis]+':'+r[F.feature];tr.setAttribute('data-key',key);
    if(key===st.open)tr.className='sel';
    tr.appendChild(el('td',r[F.basis],'nw'));tr.appendChild(el('td',r[F.feature],'num'));
    tr.appendChild(el('td',fmt(sc(r,0)),'num'));tr.appendChild(el('td',fmt(sc(r,2)),'num'));
    tr.appendChild(el('td',fmt(r[F.density],4),'num'));
    var ex=el('td',r[F.explanation]||('('+(r[F.status]||'no explanation')+')'),'expl');
    tr.appendChild(ex);tr.appendChild(el('td',r[F.top],'tt'));tb.appendChild(tr);}
  document.querySelectorAll('#list th').forEach(function(th){var k=th.getAttribute('data-key');
    if(k===st.sort)th.setAttribute('aria-sort',st.dir==='asc'?'ascending':'descending');
    else th.removeAttribute('aria-sort');});
  var txt=n?('rows '+(a+1)+'\u2013'+b+' of '+n):'no matching feature';
  txt+=' \u00b7 '+rows.length+(rows.length<META.n_rows?(' of '+META.n_rows+' loaded'):' features');
  $('count').textContent=txt;$('count').setAttribute('data-n',String(n));
  $('prev').disabled=st.page<=0;$('next').disabled=st.page>=pages-1;}
var pend=null;function refresh(){compute();render();writeHash();}
function soon(){if(pend===null)pend=setTimeout(function(){pend=null;refresh();},0);}
function findRow(key){var i=key.lastIndexOf(':');if(i<0)return null;
  var b=key.slice(0,i),f=parseInt(key.slice(i+1),10);
  for(var j=0;j<rows.length;j++)if(rows[j][F.basis]===b&&rows[j][F.feature]===f)return rows[j];
  return null;}
function stem(b){for(var i=0;i<META.bases.length;i++)if(META.bases[i].name===b)return META.bases[i];
  return null;}
function open(key){st.open=key;writeHash();
  document.querySelectorAll('#rows tr').forEach(function(tr){
    tr.className=tr.getAttribute('data-key')===key?'sel':'';});showPanel();}
function showPanel(){var p=$('panel'),key=st.open;if(!key)return;
  var r=findRow(key);p.textContent='';
  if(!r){var m=nList<META.n_list?'loading '+key+'\u2026':'no feature '+key;
    p.appendChild(el('p',m,'muted'));return;}
  var d=feats[key],bi=stem(r[F.basis]);
  p.appendChild(el('h2',key+(bi&&bi.kind?' ('+bi.kind+')':'')));
  if(!d){var src='data/feat-'+bi.stem+'-'+r[F.chunk]+'.js';
    if(!requested[src]){requested[src]=1;var s=document.createElement('script');s.src=src;
      s.onerror=function(){p.appendChild(el('p','cannot load '+src,'bad'));};
      document.body.appendChild(s);}
    p.appendChild(el('p','loading\u2026','muted'));return;}
  p.appendChild(el('div',d.explanation||'(no explanation)','expl-text'));
  var stx='explanation status: '+(d.status||'?')+(d.error?' \u2014 '+d.error:'');
  p.appendChild(el('div',stx,d.status==='ok'?'muted':'bad'));
  p.appendChild(el('div','density '+fmt(d.density,5)+' \u00b7 max activation '+
    fmt(d.max_act,3),'muted'));
  p.appendChild(el('h3','Scores'));var groups={},order=[];
  d.scores.forEach(function(s){var k=s[0]+'|'+s[1]+'|'+s[2];
    if(!groups[k]){groups[k]={s:s,real:null,nul:null};order.push(k);}
    if(s[3]==='')groups[k].real=s;else groups[k].nul=s;});
  var t=el('table'),h=document.createElement('tr');
  ['scorer','variant','method','score','shuffled null','lift','status'].forEach(function(c){
    h.appendChild(el('th',c));});t.appendChild(h);
  order.forEach(function(k){var g=groups[k],tr=document.createElement('tr');
    var rv=g.real&&g.real[5]==='ok'?g.real[4]:null,nv=g.nul&&g.nul[5]==='ok'?g.nul[4]:null;
    [g.s[0],g.s[1],g.s[2]].forEach(function(c){tr.appendChild(el('td',c));});
    tr.appendChild(el('td',g.real?(rv!==null?fmt(rv):g.real[5]):'','num'));
    tr.appendChild(el('td',g.nul?(nv!==null?fmt(nv):g.nul[5]):'','num'));
    tr.appendChild(el('td',rv!==null&&nv!==null?fmt(rv-nv):'','num'));
    var stt=g.real?g.real[5]+(g.real[6]?': '+g.real[6]:''):'';
    tr.appendChild(el('td',stt,g.real&&g.real[5]!=='ok'?'bad':''));t.appendChild(tr);});
  if(!order.length)p.appendChild(el('p','no scores','muted'));else p.appendChild(t);
  if(d.causal)causalPanel(p,d.causal);
  if(d.absorption)absorptionPanel(p,d.absorption,r[F.basis]);
  if(bi&&bi.diagnostics){p.appendChild(el('h3','Diagnostics of basis '+r[F.basis]));
    var dt=el('table');Object.keys(bi.diagnostics).forEach(function(k){
      var tr=document.createElement('tr');tr.appendChild(el('td',k));
      var v=bi.diagnostics[k];
      tr.appendChild(el('td',typeof v!=='number'?JSON.stringify(v):
        Number.isInteger(v)?String(v):fmt(v,4)));
      dt.appendChild(tr);});p.appendChild(dt);}
  var mx=d.max_act||0;['explain','test_top','test_quantile','test_random'].forEach(function(k){
    d[k].forEach(function(e){e.acts.forEach(function(a){if(a>mx)mx=a;});});});
  var secs=[['Windows shown to the explainer','explain'],
    ['Top windows (held out)','test_top'],
    ['Quantile windows','test_quantile'],['Random windows','test_random']];
  secs.forEach(function(sx){var exs=d[sx[1]];if(!exs.length)return;
    p.appendChild(el('h3',sx[0]+' \u00b7 '+exs.length));
    exs.forEach(function(e){var div=el('div',null,'ex');
      var emax=Math.max.apply(null,e.acts.concat([0]));
      div.appendChild(el('span',e.kind+(e.q>=0?' q'+e.q:'')+' max '+fmt(emax,2),'lab'));
      e.tokens.forEach(function(tok,i){
        var a=e.acts[i]||0,sp=el('span',tok.replace(/\n/g,'\u23ce'),'t');
        var al=mx>0?Math.max(0,Math.min(1,a/mx)):0;
        if(al>0)sp.style.background='rgba(255,110,0,'+al.toFixed(3)+')';
        sp.title='activation '+fmt(a,3);div.appendChild(sp);});p.appendChild(div);});});
  var sims=d.sims||[];if(sims.length){
    p.appendChild(el('h3','Simulated vs true \u00b7 '+sims.length+' scored examples'));
    p.appendChild(el('p','per token: true activation (orange, upper row) and the simulator\'s '+
      'prediction (blue, lower row), each shaded against its own range over these examples',
      'muted'));
    var tm=0,plo=Infinity,phi=-Infinity;sims.forEach(function(e){
      e.true.forEach(function(a){if(a>tm)tm=a;});
      e.pred.forEach(function(v){if(v<plo)plo=v;if(v>phi)phi=v;});});
    sims.forEach(function(e){var div=el('div',null,'ex sim');
      div.appendChild(el('span',e.kind,'lab'));
      e.tokens.forEach(function(tok,i){var a=e.true[i]||0,v=e.pred[i];
        var sp=el('span',null,'t st'),tt=el('span',tok.replace(/\n/g,'\u23ce'),'tt'),
          pp=el('span','\u00a0','pp');
        if(tm>0&&a>0)tt.style.background='rgba(255,110,0,'+Math.min(1,a/tm).toFixed(3)+')';
        if(v!==null&&v!==undefined&&phi>plo)
          pp.style.background='rgba(40,110,255,'+((v-plo)/(phi-plo)).toFixed(3)+')';
        sp.title='true '+fmt(a,3)+' \u00b7 simulated '+fmt(v,3);
        sp.appendChild(tt);sp.appendChild(pp);div.appendChild(sp);});p.appendChild(div);});}
  document.documentElement.setAttribute('data-open',key);}
function toks(list){return list.map(function(x){return JSON.stringify(x[0])+' '+fmt(x[1],3);})
  .join(', ');}
function causalPanel(p,c){var o=c.output,a=c.ablation;
  if(o){var s=el('div',null,'causal-output');s.appendChild(el('h3','Output side'));
    s.appendChild(el('div','logit lens, promoted: '+toks(o.lens_top),'lens-top'));
    s.appendChild(el('div','logit lens, suppressed: '+toks(o.lens_bottom),'muted'));
    s.appendChild(el('div','output score '+fmt(o.score,3)+' (other feature\u2019s tokens '+
      fmt(o.null,3)+', lift '+fmt(o.lift,3)+') nats','muted'));
    if(o.llm_explanation)s.appendChild(el('div','LLM summary: '+o.llm_explanation+
      ' (score '+fmt(o.llm_score,3)+')','muted'));p.appendChild(s);}
  if(a){var s2=el('div',null,'causal-ablation');s2.appendChild(el('h3','Ablation effect'));
    s2.appendChild(el('div',a.kl===null?'undefined: '+(a.reason||''):'KL '+fmt(a.kl,4)+
      ' \u00b7 CE change '+fmt(a.ce_delta,4)+' nats \u00b7 '+a.n_contexts+' contexts, '+
      a.n_pairs+' positions','muted'));
    if(a.falls&&a.falls.length)s2.appendChild(el('div','falls when ablated: '+toks(a.falls),
      'abl-falls'));
    if(a.rises&&a.rises.length)s2.appendChild(el('div','rises when ablated: '+toks(a.rises),
      'muted'));p.appendChild(s2);}
  var g=c.steering;if(g){var s3=el('div',null,'causal-steering');
    s3.appendChild(el('h3','Steering'));
    s3.appendChild(el('div','unsteered: '+JSON.stringify(g.unsteered),'muted'));
    ['feature','diffmean','prompting'].forEach(function(k){var a=g.arms[k];if(!a)return;
      s3.appendChild(el('div',k+(k==='prompting'?'':' \u00b7 factor '+fmt(a.factor,2))+
        ' \u00b7 concept (activation) '+fmt(a.act,3)+' \u00b7 concept (PMI) '+fmt(a.pmi,3)+
        ' \u00b7 NLL rise '+fmt(a.nll_rise,3)+' \u00b7 repeated bigrams '+fmt(a.repeat,2)+': '+
        JSON.stringify(a.text),'steer-'+k));});
    var J=g.judge;if(J)['feature','axbench','diffmean','prompting','unsteered'].forEach(function(k){
      var a=J[k];if(!a)return;s3.appendChild(el('div','judge · '+k+(k==='axbench'?
        ' · factor '+fmt(a.factor,2):'')+' · concept '+fmt(a.concept,2)+
        ' · instruction '+fmt(a.instruction,2)+' · fluency '+fmt(a.fluency,2)+
        ' · harmonic mean '+fmt(a.hmean,2),'muted'));});
    if(g.judge_reason)s3.appendChild(el('div','judge: '+g.judge_reason,'muted'));
    p.appendChild(s3);}}
function latentLinks(basis,ids){var s=el('span');ids.forEach(function(id,i){
    if(i)s.appendChild(document.createTextNode(', '));var key=basis+':'+id,a=el('a',id);
    a.href='#open='+encodeURIComponent(key);a.setAttribute('data-link',key);
    a.addEventListener('click',function(ev){ev.preventDefault();open(key);});
    s.appendChild(a);});return s;}
function absorptionPanel(p,ab,basis){var s=el('div',null,'absorption');
  s.appendChild(el('h3','First-letter absorption'));var m=ab.main;
  if(m){s.appendChild(el('div','main latent of first letter "'+m.letter+'" (cosine with the '+
      'probe direction '+fmt(m.cos,3)+'): stays off on '+m.n_missed+' of the letter\u2019s '+
      'words where other latents absorb it'+(m.missed.length<m.n_missed?' (first '+
      m.missed.length+' shown)':''),'abs-main'));
    if(m.missed.length){var t=el('table'),h=document.createElement('tr');
      ['word','absorption fraction','full','absorbing latents'].forEach(function(c){
        h.appendChild(el('th',c));});t.appendChild(h);
      m.missed.forEach(function(w){var tr=document.createElement('tr');
        tr.appendChild(el('td',JSON.stringify(w.word)));
        tr.appendChild(el('td',fmt(w.fraction,3),'num'));
        tr.appendChild(el('td',w.full?'yes':'no'));var td=el('td');
        td.appendChild(latentLinks(basis,w.absorbers||[]));tr.appendChild(td);
        t.appendChild(tr);});s.appendChild(t);}}
  var a=ab.absorbs;if(a&&a.length){s.appendChild(el('div','absorbs the first letter of '+
      a.length+' word'+(a.length>1?'s':'')+' from their main latents','abs-absorbs'));
    var t2=el('table'),h2=document.createElement('tr');
    ['word','letter','absorption fraction','full','main latents'].forEach(function(c){
      h2.appendChild(el('th',c));});t2.appendChild(h2);
    a.forEach(function(w){var tr=document.createElement('tr');
      tr.appendChild(el('td',JSON.stringify(w.word)));tr.appendChild(el('td',w.letter));
      tr.appendChild(el('td',fmt(w.fraction,3),'num'));
      tr.appendChild(el('td',w.full?'yes':'no'));var td=el('td');
      td.appendChild(latentLinks(basis,w.main));tr.appendChild(td);t2.appendChild(tr);});
    s.appendChild(t2);}
  p.appendChild(s);}
window.AI={add:function(o){
  if(o.type==='list'){o.rows.forEach(function(r){
      r.hay=(r[F.basis]+' '+r[F.feature]+' '+r[F.basis]+':'+r[F.feature]+' '+r[F.explanation]+
        ' '+r[F.top]+' '+(r[F.tags]||'')).toLowerCase();
      rows.push(r);});nList++;$('loading').textContent=nList<META.n_list?
      'loading list '+nList+'/'+META.n_list:'';soon();
    if(st.open&&!feats[st.open])showPanel();
    if(nList>=META.n_list)setTimeout(function(){
      document.documentElement.setAttribute('data-ready','1');},0);}
  else if(o.type==='feat'){Object.keys(o.features).forEach(function(k){
      feats[o.basis+':'+k]=o.features[k];});
    if(st.open)showPanel();}}};
readHash();$('q').value=st.q;var ms=$('m');META.methods.forEach(function(m,i){
  var op=el('option',m);op.value=String(i);ms.appendChild(op);});ms.value=String(st.m);
if(META.methods.length<2)$('mwrap').style.display='none';
var timer=null;$('q').addEventListener('input',function(){clearTimeout(timer);
  timer=setTimeout(function(){st.q=$('q').value;st.page=0;refresh();},150);});
ms.addEventListener('change',function(){st.m=parseInt(ms.value,10)||0;refresh();});
document.querySelectorAll('#list th[data-key]').forEach(function(th){
  th.addEventListener('click',function(){
  var k=th.getAttribute('data-key');if(st.sort===k)st.dir=st.dir==='asc'?'desc':'asc';
  else{st.sort=k;st.dir=k==='feature'?'asc':'desc';}st.page=0;refresh();});});
$('prev').addEventListener('click',function(){st.page--;refresh();});
$('next').addEventListener('click',function(){st.page++;refresh();});
$('rows').addEventListener('click',function(ev){var tr=ev.target.closest('tr');
  if(tr&&tr.getAttribute('data-key'))open(tr.getAttribute('data-key'));});
window.addEventListener('hashchange',function(){var o=st.open;readHash();$('q').value=st.q;
  ms.value=String(st.m);compute();render();if(st.open&&st.open!==o)showPanel();});
render();if(st.open)showPanel();
for(var i=0;i<META.n_list;i++){var s=document.createElement('script');s.async=false;
  s.src='data/list-'+i+'.js';document.body.appendChild(s);}
if(!META.n_rows)document.documentElement.setAttribute('data-ready','1');
})();
