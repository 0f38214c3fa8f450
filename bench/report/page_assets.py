"""The page's style sheet and its two scripts, kept out of :mod:`bench.report.html` so that the
page's structure reads on its own.

``SCRIPT`` takes options from the query string or the fragment
(``?sort=<column>&order=asc|desc&filter=<text>&status=<status>``); an unknown key or value is
ignored and named in ``#url-note`` with the valid ones, never an exception that would leave the
rest of the page dead.
"""

from __future__ import annotations

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1600px;padding:0 16px;color:#222}
h1{font-size:22px}h2{margin-top:2em;border-bottom:1px solid #ccc}h4{margin:.8em 0 .3em}
table{border-collapse:collapse;margin:.4em 0}th,td{border:1px solid #ddd;padding:3px 6px;
vertical-align:top;overflow-wrap:normal}thead th{background:#f3f3f3;position:sticky;top:0}
#cells td.num{white-space:nowrap;text-align:right}
th button{font:inherit;font-weight:600;border:0;background:none;cursor:pointer;padding:0}
th[aria-sort=ascending] button::after{content:" ▲"}th[aria-sort=descending] button::after{content:" ▼"}
.reason{display:block;max-width:34em;font-size:12px;color:#555}
.st-ok{color:#1b7a2f}.st-oom,.st-error,.st-diverged,.st-timeout,.st-mixed{color:#b00}
.st-incompatible{color:#666}
.reinit{color:#a05a00;font-weight:700}.note{color:#555;font-size:12.5px}
.small{font-size:12.5px}.advice td{max-width:26em;min-width:15em}
.advice td:first-child{min-width:0;white-space:nowrap}
.controls{margin:.5em 0}input[type=search]{width:22em}
.scroll{overflow-x:auto;max-width:100%}#compat-scroll{overflow:auto;max-height:34em}#compat td.ok{background:#e3f3e6}#compat td.bad{background:#fde8e4}
#compat td.na{background:repeating-linear-gradient(135deg,#f4f4f4 0 6px,#e9e9e9 6px 12px);color:#555}
#findings-body code{white-space:normal}.findings li{margin:.3em 0}
figure{margin:1em 0}svg.chart{max-width:100%;height:auto}
svg.curve{font-size:10px;background:#fafafa}svg.curve .ax{stroke:#888}
svg.curve polyline{fill:none;stroke-width:1.6}.s0{stroke:#1f77b4;fill:#1f77b4}
.s1{stroke:#d62728;fill:#d62728}.s2{stroke:#2ca02c;fill:#2ca02c}.s3{stroke:#9467bd;fill:#9467bd}
pre{background:#f6f6f6;padding:6px;overflow:auto}details{margin:.3em 0}summary{cursor:pointer}
#js-errors{color:#b00}.warn{color:#8a4b00}
/* Identifiers (model, strategy, dataset names, operators, hashes) are never broken inside a
   word: a narrow screen scrolls the table instead (.scroll). */
.id,code,td.num,#cells th,#compat th,#compat td{white-space:nowrap}
/* Not applicable (the strategy cannot run on this model) is not a failure: grey and hatched,
   where failures are tinted red. */
tr.cell[data-status=incompatible]>td{background:repeating-linear-gradient(135deg,#f4f4f4 0 6px,
#e9e9e9 6px 12px);color:#555}
tr.cell[data-status=oom]>td,tr.cell[data-status=error]>td,tr.cell[data-status=diverged]>td,
tr.cell[data-status=timeout]>td,tr.cell[data-status=mixed]>td{background:#fdecea}
.caveat{border:1px solid #d9a400;background:#fff8e1;padding:4px 14px;margin:.8em 0}
.caveat li{margin:.2em 0}.recipe,.constants{margin:.3em 0}
#url-note{color:#8a4b00;font-weight:600}#url-note:empty{display:none}
@media (max-width:700px){body{padding:0 6px}input[type=search]{width:100%;box-sizing:border-box}
.reason{max-width:22em}}
"""

# Before anything else: record errors (and console.error) into the DOM, so a headless
# browser's --dump-dom shows them.
ERROR_HOOK = """
(function(){var errs=[];window.__errors=errs;
function put(t){errs.push(t);var u=document.getElementById('js-errors');
if(u){var li=document.createElement('li');li.textContent=t;u.appendChild(li);}}
window.__putError=put;
window.addEventListener('error',function(e){put('error: '+e.message+' at '+(e.lineno||0));});
window.addEventListener('unhandledrejection',function(e){put('rejection: '+e.reason);});
var ce=console.error;console.error=function(){put('console.error: '+
Array.prototype.join.call(arguments,' '));return ce.apply(console,arguments);};})();
"""

SCRIPT = """
(function(){
var opts=new URLSearchParams(location.search||location.hash.replace(/^#/,''));
function $(id){return document.getElementById(id);}
var table=$('cells'),body=table.tBodies[0],heads=table.tHead.rows[0].cells;
function cmp(a,b,num){if(a===b)return 0;if(a==='')return 1;if(b==='')return -1;
return num?(parseFloat(a)-parseFloat(b)):a.localeCompare(b);}
function sortBy(key,order){var col=-1;
for(var i=0;i<heads.length;i++){if(heads[i].dataset.key===key)col=i;}
if(col<0)return false;
for(var j=0;j<heads.length;j++)heads[j].removeAttribute('aria-sort');
var num=heads[col].dataset.type==='num',sign=order==='desc'?-1:1;
var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(x,y){var a=x.cells[col].dataset.v,b=y.cells[col].dataset.v;
if(a===''||b===''){var c=cmp(a,b,num);if(c)return c;}
return sign*cmp(a,b,num)||(x.dataset.i-y.dataset.i);});
rows.forEach(function(r){body.appendChild(r);});
heads[col].setAttribute('aria-sort',order==='desc'?'descending':'ascending');
table.dataset.sorted=key+':'+(order==='desc'?'desc':'asc');return true;}
function filter(){var q=$('filter').value.toLowerCase(),st=$('status').value,n=0;
Array.prototype.forEach.call(body.rows,function(r){
var show=(!q||r.textContent.toLowerCase().indexOf(q)>=0)&&(!st||r.dataset.status===st);
r.hidden=!show;if(show)n++;});$('shown').textContent=n+' of '+body.rows.length+' cells';}
Array.prototype.forEach.call(heads,function(h){h.querySelector('button').addEventListener(
'click',function(){var cur=table.dataset.sorted||'';
sortBy(h.dataset.key,cur===h.dataset.key+':asc'?'desc':'asc');});});
$('filter').addEventListener('input',filter);$('status').addEventListener('change',filter);
var cf=$('compat-filter');if(cf){cf.addEventListener('input',function(){var q=cf.value.toLowerCase();
Array.prototype.forEach.call($('compat').tBodies[0].rows,function(r){
r.hidden=q&&r.textContent.toLowerCase().indexOf(q)<0;});});}
// Options from the URL: anything unknown is ignored and named, with the valid choices, in
// #url-note -- a mistyped link still gives a working page.
var notes=[],names=['sort','order','filter','status'];
function list(a){return a.join(', ');}
var cols=Array.prototype.map.call(heads,function(h){return h.dataset.key;});
var sts=Array.prototype.map.call($('status').options,function(o){return o.value;})
.filter(function(v){return v;});
opts.forEach(function(v,k){if(names.indexOf(k)<0)notes.push('unknown option "'+k+
'" ignored; valid options: '+list(names));});
if(opts.get('filter'))$('filter').value=opts.get('filter');
var st=opts.get('status');
if(st){if(sts.indexOf(st)>=0)$('status').value=st;
else notes.push('status "'+st+'" ignored; valid: '+list(sts));}
var order=opts.get('order')||'asc';
if(order!=='asc'&&order!=='desc'){notes.push('order "'+order+
'" ignored; valid: asc, desc');order='asc';}
var key=opts.get('sort');
if(key&&!sortBy(key,order))notes.push('sort key "'+key+'" ignored; valid keys: '+list(cols));
$('url-note').textContent=notes.join('. ');
filter();
document.documentElement.setAttribute('data-js',window.__errors.length?'errors':'ok');
})();
"""

